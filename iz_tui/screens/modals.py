"""Small modal dialogs: a note, the rerank options, the export target, the two runs to compare, a task to import.

Each returns plain data through ``dismiss`` (None when cancelled) so the screen that opened it does the work;
the dialogs themselves never touch the engine or the history. The one exception is :class:`ImportTaskModal`:
it runs the task importer itself, so that a bad file is explained in the dialog and can be corrected there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from iz_tui.formatting import run_label
from iz_tui.widgets.light_select import LightSelect


class _Dialog(ModalScreen[Any]):
    """Escape cancels; the dialog box is centred and sized for 80x24."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, ".cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    @staticmethod
    def buttons(ok: str) -> ComposeResult:
        with Horizontal(classes="dialog-buttons"):
            yield Button(ok, variant="primary", compact=True, classes="ok")
            yield Button("Cancel", compact=True, classes="cancel")


class NoteModal(_Dialog):
    """A note on a candidate (empty clears it)."""

    def __init__(self, instruction: str, note: str | None) -> None:
        super().__init__()
        self.instruction = instruction
        self.note = note or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("[b]Note[/] on: " + _esc(self.instruction[:150]), classes="dialog-title")
            yield Input(self.note, placeholder="why this one is good (or bad); empty clears", id="note-input")
            yield from self.buttons("Save")

    def on_mount(self) -> None:
        self.query_one("#note-input", Input).focus()

    @on(Input.Submitted, "#note-input")
    @on(Button.Pressed, ".ok")
    def _save(self) -> None:
        self.dismiss(self.query_one("#note-input", Input).value.strip())


@dataclass(frozen=True)
class RerankChoice:
    """What to re-score and how: chosen candidates or the top k of a run; split, size and endpoint."""

    candidate_ids: tuple[int, ...]
    run_id: int | None
    top_k: int
    split: str
    n_examples: int | None
    endpoint: str | None


class RerankModal(_Dialog):
    """Rerank the selected candidates, or the top k of a run, on the test split, more examples or another endpoint."""

    def __init__(self, selected: list[int], runs: list[dict[str, Any]], run_id: int | None,
                 endpoints: list[str]) -> None:
        super().__init__()
        self.selected = selected
        self.runs = runs
        self.run_id = run_id
        self.endpoints = endpoints

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="rerank-dialog"):
            yield Static("[b]Rerank[/]: re-score and sort by the new score", classes="dialog-title")
            if self.selected:
                yield Static(f"the {len(self.selected)} selected candidate{'s' if len(self.selected) > 1 else ''}")
            else:
                with Horizontal(classes="dialog-row"):
                    yield Label("top", classes="dialog-label")
                    yield Input("3", type="integer", compact=True, id="rerank-k", classes="short")
                    yield Label("of run", classes="dialog-label")
                    yield LightSelect([(run_label(r), r["id"]) for r in self.runs], value=self._default_run(),
                                 allow_blank=False, compact=True, id="rerank-run")
            with Horizontal(classes="dialog-row"):
                yield Label("split", classes="dialog-label")
                yield LightSelect([("test", "test"), ("dev", "dev")], value="test", allow_blank=False, compact=True,
                             id="rerank-split")
                yield Label("examples", classes="dialog-label")
                yield Input("", placeholder="run's", type="integer", compact=True, id="rerank-n", classes="short")
            with Horizontal(classes="dialog-row"):
                yield Label("endpoint", classes="dialog-label")
                yield LightSelect([("same as the run", "")] + [(e, e) for e in self.endpoints], value="",
                             allow_blank=False, compact=True, id="rerank-endpoint")
            yield from self.buttons("Rerank")

    def _default_run(self) -> Any:
        ids = [r["id"] for r in self.runs]
        return self.run_id if self.run_id in ids else (ids[0] if ids else Select.NULL)

    @on(Input.Submitted)
    @on(Button.Pressed, ".ok")
    def _ok(self) -> None:
        n_text = self.query_one("#rerank-n", Input).value.strip()
        endpoint = str(self.query_one("#rerank-endpoint", Select).value or "") or None
        split = str(self.query_one("#rerank-split", Select).value)
        if self.selected:
            self.dismiss(RerankChoice(tuple(self.selected), None, len(self.selected), split,
                                      int(n_text) if n_text.isdigit() else None, endpoint))
            return
        k_text = self.query_one("#rerank-k", Input).value.strip()
        run = self.query_one("#rerank-run", Select).value
        if not k_text.isdigit() or int(k_text) < 1 or run is Select.NULL:
            self.notify("give k ≥ 1 and a run", severity="warning")
            return
        self.dismiss(RerankChoice((), int(run), int(k_text), split,  # type: ignore[arg-type]
                                  int(n_text) if n_text.isdigit() and int(n_text) > 0 else None, endpoint))


class ExportModal(_Dialog):
    """JSON or Markdown, to a file under the current directory (or any path typed here)."""

    def __init__(self, what: str, stem: str) -> None:
        super().__init__()
        self.what = what
        self.stem = stem

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]Export[/] {_esc(self.what)}", classes="dialog-title")
            with Horizontal(classes="dialog-row"):
                yield Label("format", classes="dialog-label")
                yield LightSelect([("JSON", "json"), ("Markdown", "md")], value="json", allow_blank=False, compact=True,
                             id="export-format")
            with Horizontal(classes="dialog-row"):
                yield Label("file", classes="dialog-label")
                yield Input(f"{self.stem}.json", compact=True, id="export-path")
            yield Static(f"[dim]relative paths are under {_esc(str(Path.cwd()))}[/]")
            yield from self.buttons("Export")

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        box = self.query_one("#export-path", Input)
        path = Path(box.value)
        if path.suffix in (".json", ".md"):
            box.value = str(path.with_suffix(f".{event.value}"))

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, ".ok")
    def _ok(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.notify("type a file name", severity="warning")
            return
        self.dismiss((str(self.query_one("#export-format", Select).value), path))


class CompareModal(_Dialog):
    """Pick two runs (of the same task or of different methods) to put side by side."""

    def __init__(self, runs: list[dict[str, Any]], first: int | None, second: int | None) -> None:
        super().__init__()
        self.runs = runs
        self.first = first
        self.second = second

    def compose(self) -> ComposeResult:
        options = [(run_label(r), r["id"]) for r in self.runs]
        with Vertical(classes="dialog"):
            yield Static("[b]Compare two runs[/] (best dev over evaluations, and test scores)",
                         classes="dialog-title")
            with Horizontal(classes="dialog-row"):
                yield Label("run A", classes="dialog-label")
                yield LightSelect(options, value=self.first if self.first is not None else Select.NULL, compact=True,
                             id="cmp-a")
            with Horizontal(classes="dialog-row"):
                yield Label("run B", classes="dialog-label")
                yield LightSelect(options, value=self.second if self.second is not None else Select.NULL,
                             compact=True, id="cmp-b")
            yield from self.buttons("Compare")

    @on(Button.Pressed, ".ok")
    def _ok(self) -> None:
        a = self.query_one("#cmp-a", Select).value
        b = self.query_one("#cmp-b", Select).value
        if a is Select.NULL or b is Select.NULL:
            self.notify("pick two runs", severity="warning")
            return
        self.dismiss((int(a), int(b)))  # type: ignore[arg-type]


class ImportTaskModal(_Dialog):
    """Import a task from a data file, or merge an instruction-induction induce + execute pair, as
    `iz tasks import` does. The importer runs in a thread (the UI stays live); it writes nothing on error, and its
    problem and fix are shown here with the dialog left open. Returns the imported Task (None when cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        from engine.tasks.importers import DEFAULT_METRIC, IMPORT_METRICS

        with Vertical(classes="dialog", id="import-dialog"):
            yield Static("[b]Import a task[/] from a .json (instruction induction), .jsonl or .csv file",
                         classes="dialog-title")
            with Horizontal(classes="dialog-row"):
                yield Label("file", classes="dialog-label")
                yield Input(placeholder="path of the data file", compact=True, id="import-path")
            with Horizontal(classes="dialog-row"):
                yield Label("execute", classes="dialog-label")
                yield Input(placeholder="execute file (optional: with it the first is the induce file)",
                            compact=True, id="import-execute")
            with Horizontal(classes="dialog-row"):
                yield Label("name", classes="dialog-label")
                yield Input(placeholder="default: the file name", compact=True, id="import-name")
            with Horizontal(classes="dialog-row"):
                yield Label("metric", classes="dialog-label")
                yield LightSelect([(f"default (the paper's, else {DEFAULT_METRIC})", "")]
                             + [(m, m) for m in IMPORT_METRICS], value="", allow_blank=False, compact=True,
                             id="import-metric")
            yield Static(f"[dim]relative paths are under {_esc(str(Path.cwd()))}[/]", id="import-status")
            yield from self.buttons("Import")

    def on_mount(self) -> None:
        self.query_one("#import-path", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, ".ok")
    def _ok(self) -> None:
        if self._busy:
            return
        path = self.query_one("#import-path", Input).value.strip()
        execute = self.query_one("#import-execute", Input).value.strip() or None
        name = self.query_one("#import-name", Input).value.strip() or None
        metric = str(self.query_one("#import-metric", Select).value or "") or None
        if not path:
            self._show("[b red]give the path of the data file[/]" if not execute else
                       "[b red]give the induce file too (the first path)[/]")
            return
        self._busy = True
        self._show("[dim]importing…[/]")
        self.run_worker(self._import(path, execute, name, metric), exclusive=True, group="import")

    async def _import(self, path: str, execute: str | None, name: str | None, metric: str | None) -> None:
        from engine.errors import IZError
        from engine.tasks import import_induce_execute, import_task

        try:
            if execute is not None:
                task = await asyncio.to_thread(import_induce_execute, path, execute, name=name, metric=metric)
            else:
                task = await asyncio.to_thread(import_task, path, name=name, metric=metric)
        except IZError as exc:
            self._busy = False
            fix = f"\n[b]fix:[/] {_esc(exc.fix)}" if exc.fix else ""
            self._show(f"[b red]{_esc(exc.problem)}[/]{fix}")
            return
        self.dismiss(task)

    def _show(self, markup: str) -> None:
        self.query_one("#import-status", Static).update(markup)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
