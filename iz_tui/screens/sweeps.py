"""Sweeps: grids of runs (task x method x seed x model) that `iz sweep` runs with workers.

Two screens over the history's sweep tables, both following a sweep that runs in another process (the driver
writes its cells and runs as they go; SQLite's data_version says when, for one pragma a second):

- :class:`SweepsScreen` (``w`` on the home screen): every sweep, newest first, with its progress;
- :class:`SweepScreen` (``enter`` on a sweep): the method x task table of held-out test scores (mean ±sd over
  seeds, :mod:`engine.sweep.report`, the same numbers `iz sweep` prints), and every cell; ``enter`` on a cell
  opens its run in the history.

Each cell is an ordinary run, so what a run shows (its candidates, outputs, scores) is the history's job: these
screens only say where each run is in the grid.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from engine.errors import IZError
from engine.sweep.report import counts, sweep_table
from iz_tui.formatting import fmt_score, short
from iz_tui.messages import HistoryChanged
from iz_tui.screens.base import BaseScreen
from iz_tui.widgets.footer import QuietFooter

#: How each status of a sweep or a cell is drawn.
STATUS_STYLE = {"created": "dim", "pending": "dim", "running": "bold yellow", "finished": "green",
                "failed": "bold red", "interrupted": "magenta"}

#: How often the screens look for changes another process committed (the sweep's driver).
POLL_S = 1.0


# -- words and numbers (pure: the tests and both screens share them) --------------------------------------
def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def status_text(status: str | None) -> Text:
    status = status or "?"
    return Text(status, style=STATUS_STYLE.get(status, ""))


def fmt_seconds(seconds: float | None) -> str:
    """``42 s``, ``3m 05s``, ``1h 02m``; a dash for nothing yet."""
    if not seconds:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _parse(stamp: str | None) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def fmt_time(stamp: str | None) -> str:
    """A stored UTC timestamp in local time, to the minute."""
    when = _parse(stamp)
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when else "—"


def sweep_seconds(sweep: dict[str, Any]) -> float | None:
    """How long the sweep took, or (running) has been going so far."""
    if sweep.get("status") == "running":
        started = _parse(sweep.get("started_at"))
        if started is not None:
            return max((_dt.datetime.now(_dt.UTC) - started).total_seconds(), 0.0)
    return sweep.get("seconds")


def cells_text(sweep: dict[str, Any]) -> str:
    """``5/8`` cells finished, ``(1 failed)`` when some failed."""
    failed = sweep.get("cells_failed") or 0
    text = f"{sweep.get('cells_finished') or 0}/{sweep.get('cells') or 0}"
    return f"{text} ({failed} failed)" if failed else text


def _models(spec: dict[str, Any]) -> list[Any]:
    return list(spec.get("models") or [None])


def grid_text(spec: dict[str, Any] | None) -> str:
    """``2 tasks × 3 methods × 3 seeds`` (× models when more than one)."""
    spec = spec or {}
    parts = [plural(len(spec.get("tasks") or []), "task"), plural(len(spec.get("methods") or []), "method"),
             plural(len(spec.get("seeds") or []), "seed")]
    if len(_models(spec)) > 1:
        parts.append(plural(len(_models(spec)), "model"))
    return " × ".join(parts)


def seeds_text(seeds: Sequence[int]) -> str:
    """``0-2,7``: runs of consecutive seeds as ranges (as `iz sweep --seeds` takes them)."""
    runs: list[list[int]] = []
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def backend_text(sweep: dict[str, Any]) -> str:
    workers = sweep.get("workers") or 0
    return f"{sweep.get('backend') or '?'} ×{workers}"


def fill_rows(table: DataTable[Any], rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Show ``rows`` (key, cells): the same keys in the same order are updated in place (no flicker, the cursor
    and scroll stay), anything else refills the table with the cursor kept on the same key when still there."""
    keys = [key for key, _ in rows]
    if keys and [str(r.key.value) for r in table.ordered_rows] == keys:
        columns = [c.key for c in table.ordered_columns]
        for key, cells in rows:
            for column, value in zip(columns, cells, strict=True):
                table.update_cell(key, column, value, update_width=True)
        return
    current = None
    if table.row_count:
        current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if current in keys:
        table.move_cursor(row=keys.index(str(current)), animate=False)


class _Polling(BaseScreen[None]):
    """A screen that reloads when another connection commits to the history (the sweep's driver)."""

    def __init__(self) -> None:
        super().__init__()
        self._data_version: int | None = None
        self._just_mounted = True

    def start_polling(self) -> None:
        """Called at the end of a screen's on_mount, once it has shown what is there."""
        self._data_version = self.history_version()
        self.set_interval(POLL_S, self._poll)


    def _poll(self) -> None:
        if not self.is_current:
            return
        version = self.history_version()
        if version is not None and version != self._data_version:
            self._data_version = version
            self.reload()
        else:
            self.tick()

    def on_screen_resume(self) -> None:
        """Back from a run in the history: the sweep may have gone on meanwhile. (The resume that follows the
        first mount has nothing new: on_mount has just loaded it.)"""
        if self._just_mounted:
            self._just_mounted = False
            return
        if self.is_mounted:
            self._data_version = self.history_version()
            self.reload()

    def on_history_changed(self, message: HistoryChanged) -> None:
        self.reload()

    def reload(self) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """Nothing was written this second: keep a running sweep's clock going."""

    def action_back(self) -> None:
        self.app.pop_screen()


class SweepsScreen(_Polling):
    """Every sweep, newest first; ``enter`` opens one."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="sweeps-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sweeps-info")
        yield QuietFooter()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#sweeps-table", DataTable)

    def on_mount(self) -> None:
        for label, key in (("id", "id"), ("status", "status"), ("backend", "backend"), ("cells", "cells"),
                           ("grid", "grid"), ("created", "created"), ("time", "time")):
            self.table.add_column(label, key=key)
        self.table.border_title = "Sweeps"
        self.reload()
        self.table.focus()
        self.start_polling()

    def reload(self) -> None:
        try:
            sweeps = self.history.sweeps(limit=200)
        except IZError as exc:
            self.query_one("#sweeps-info", Static).update(f"[red]{escape(exc.problem)}[/] — {escape(exc.fix or '')}")
            return
        self.sweeps = {str(s["id"]): s for s in sweeps}
        fill_rows(self.table, [(str(s["id"]), self._cells(s)) for s in sweeps])
        self.table.border_title = f"Sweeps ({len(sweeps)})"
        self._update_info()

    def tick(self) -> None:
        if any(s.get("status") == "running" for s in self.sweeps.values()):
            self.reload()

    @staticmethod
    def _cells(s: dict[str, Any]) -> list[Any]:
        return [str(s["id"]), status_text(s.get("status")), backend_text(s), cells_text(s), grid_text(s.get("spec")),
                fmt_time(s.get("created_at")), fmt_seconds(sweep_seconds(s))]

    def current(self) -> dict[str, Any] | None:
        if not self.table.row_count:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        return self.sweeps.get(str(key))

    @on(DataTable.RowHighlighted, "#sweeps-table")
    def _update_info(self) -> None:
        info = self.query_one("#sweeps-info", Static)
        s = self.current()
        if s is None:
            info.update("no sweeps yet: `iz sweep` runs a grid of tasks × methods × seeds and records every run "
                        "here")
            return
        spec = s.get("spec") or {}
        models = [m or "endpoint's model" for m in _models(spec)]
        line = (f"[b]sweep {s['id']}[/] · tasks {escape(', '.join(spec.get('tasks') or []))} · methods "
                f"{escape(', '.join(spec.get('methods') or []))} · seeds {seeds_text(spec.get('seeds') or [])}")
        if len(models) > 1 or models[0] != "endpoint's model":
            line += f" · models {escape(', '.join(models))}"
        # created and time again: at 80 columns their columns are past the right edge
        took = fmt_seconds(sweep_seconds(s))
        second = (f"created {fmt_time(s.get('created_at'))}{'' if took == '—' else f' · {took}'} · endpoint "
                  f"{escape(str(spec.get('endpoint') or 'default'))} · enter: results and cells")
        if s.get("error"):
            second = f"[red]error:[/] {escape(short(s['error'], 200))}"
        info.update(f"{line}\n{second}")

    @on(DataTable.RowSelected, "#sweeps-table")
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        s = self.current()
        if s is not None:
            self.app.open_sweep(int(s["id"]))


class SweepScreen(_Polling):
    """One sweep: test scores per method and task, and every cell; ``enter`` on a cell opens its run."""

    BINDINGS = [
        Binding("o", "open_run", "Open run"),
        Binding("f", "toggle_failed", "Failed only"),
        Binding("c", "copy", "Copy best"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, sweep_id: int) -> None:
        super().__init__()
        self.sweep_id = sweep_id
        self.sweep: dict[str, Any] = {}
        self.cells: dict[str, dict[str, Any]] = {}
        self.failed_only = False
        self._with_model: bool | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="sweep-head")
        yield DataTable(id="sweep-scores", cursor_type="none", show_cursor=False)
        yield DataTable(id="sweep-cells", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sweep-info")
        yield QuietFooter()

    @property
    def scores(self) -> DataTable[Any]:
        return self.query_one("#sweep-scores", DataTable)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#sweep-cells", DataTable)

    def on_mount(self) -> None:
        self.scores.can_focus = False
        self.scores.border_title = "Test score: mean ±sd over seeds"
        self.scores.border_subtitle = "best per task in green · (k/n): seeds finished so far"
        self.reload()
        self.table.focus()
        self.start_polling()

    # -- loading ------------------------------------------------------------------------------------------
    def reload(self) -> None:
        try:
            self.sweep = self.history.sweep(self.sweep_id)
            cells = self.history.sweep_cells(self.sweep_id)
        except IZError as exc:
            self.query_one("#sweep-head", Static).update(f"[red]{escape(exc.problem)}[/] — {escape(exc.fix or '')}")
            return
        self._show_head(cells)
        self._show_scores(cells)
        self._show_cells(cells)

    def tick(self) -> None:
        if self.sweep.get("status") == "running" and self.cells:
            self._show_head(list(self.cells.values()))

    def _show_head(self, cells: Sequence[dict[str, Any]]) -> None:
        s, spec = self.sweep, self.sweep.get("spec") or {}
        by_status = counts(cells)
        tally = " · ".join(f"{by_status[k]} {k}" for k in ("finished", "failed", "running", "pending") if k in by_status)
        status = s.get("status") or "?"
        lines = [f"[b]sweep {s['id']}[/] · [{STATUS_STYLE.get(status, '')}]{status}[/] · {backend_text(s)} workers · "
                 f"{tally or 'no cells'} (of {len(cells)}) · {fmt_seconds(sweep_seconds(s))}"]
        grid = (f"tasks {escape(', '.join(spec.get('tasks') or []))} × methods "
                f"{escape(', '.join(spec.get('methods') or []))} × seeds {seeds_text(spec.get('seeds') or [])}")
        models = _models(spec)
        if len(models) > 1 or models[0] is not None:
            grid += f" × models {escape(', '.join(m or 'endpoint' for m in models))}"
        lines.append(f"[dim]{grid} · endpoint {escape(str(spec.get('endpoint') or 'default'))}[/]")
        if s.get("error"):
            lines.append(f"[red]error:[/] {escape(short(s['error'], 300))}")
        self.query_one("#sweep-head", Static).update("\n".join(lines))

    def _show_scores(self, cells: Sequence[dict[str, Any]]) -> None:
        """Methods down, tasks across, then the mean over tasks; each task's best method in bold green."""
        table = sweep_table(cells)
        scores = self.scores
        scores.clear(columns=True)
        scores.add_column("method", key="method")
        for task in table.tasks:
            scores.add_column(task, key=f"task:{task}")
        scores.add_column("mean", key="mean")
        best = {t: table.best_method(t) for t in table.tasks}
        means = {m: table.method_mean(m) for m in table.methods}
        top = max((v for v in means.values() if v is not None), default=None)
        for m in table.methods:
            row: list[Any] = [Text(m, style="bold")]
            for t in table.tasks:
                row.append(Text(table.stat(m, t).text(), style="bold green" if best[t] == m else ""))
            mean = means[m]
            row.append(Text("—" if mean is None else f"{mean:.2f}",
                            style="bold green" if mean is not None and mean == top else ""))
            scores.add_row(*row, key=m)

    def _show_cells(self, cells: Sequence[dict[str, Any]]) -> None:
        if self._with_model is None:  # the grid never changes: the columns are set once
            self._with_model = any(c.get("model") for c in cells)
            for label, key in (("#", "pos"), ("task", "task"), ("method", "method"), ("seed", "seed"),
                               *([("model", "model")] if self._with_model else []), ("status", "status"),
                               ("dev", "dev"), ("test", "test"), ("run", "run"), ("error", "error")):
                self.table.add_column(label, key=key)
        self.cells = {str(c["id"]): c for c in cells}
        shown = [c for c in cells if not self.failed_only or c["status"] == "failed"]
        fill_rows(self.table, [(str(c["id"]), self._cell_row(c)) for c in shown])
        what = "failed cells" if self.failed_only else "Cells"
        self.table.border_title = f"{what} ({len(shown)}{f' of {len(cells)}' if self.failed_only else ''})"
        self.table.border_subtitle = "enter: open the cell's run in the history"
        self._show_cell()

    def _cell_row(self, c: dict[str, Any]) -> list[Any]:
        row: list[Any] = [str(c["position"] + 1), Text(short(c["task"], 24)), Text(short(c["method"], 20)),
                          str(c["seed"])]
        if self._with_model:
            row.append(Text(short(c.get("model") or "—", 20)))
        row += [status_text(c["status"]), fmt_score(c.get("dev_score")), fmt_score(c.get("test_score")),
                "—" if c.get("run_id") is None else str(c["run_id"]),
                Text(short(c.get("error"), 40), style="red")]  # in full below, when highlighted
        return row

    def current(self) -> dict[str, Any] | None:
        if not self.table.row_count:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        return self.cells.get(str(key))

    @on(DataTable.RowHighlighted, "#sweep-cells")
    def _show_cell(self) -> None:
        """The highlighted cell in full: its run's counts, then its error or its best instruction."""
        info = self.query_one("#sweep-info", Static)
        c = self.current()
        if c is None:
            info.update("no failed cells" if self.failed_only else "no cells")
            return
        head = f"[b]cell {c['position'] + 1}[/]"  # its task, method, seed and model are on its row
        if c.get("run_id") is None:
            head += f" · no run yet ({c['status']})"
        else:
            head += (f" · run {c['run_id']} ({c.get('run_status') or '?'}) · {c.get('evaluations') or 0} evaluations"
                     f" · {c.get('calls') or 0} calls ({c.get('calls_saved') or 0} saved)")
            if c.get("seconds"):
                head += f" · {fmt_seconds(c['seconds'])}"
        if (c.get("attempts") or 0) > 1:
            head += f" · {c['attempts']} attempts"
        if c.get("error"):
            body = f"[red]error:[/] {escape(short(c['error'], 300))}"
        elif c.get("best_instruction"):
            body = f"[dim]best:[/] [green]{escape(short(c['best_instruction'], 300))}[/]"
        else:
            body = "[dim]no best instruction yet[/]"
        info.update(f"{head}\n{body}")

    # -- actions ------------------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#sweep-cells")
    def _row_selected(self) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        """The cell's run in the history (its candidates, the best one under the cursor)."""
        c = self.current()
        if c is None:
            return
        if c.get("run_id") is None:
            why = {"pending": "it is waiting for a worker", "running": "its worker is starting it",
                   "failed": "it failed before its run was recorded (the error is below the list)"}
            self.notify(f"cell {c['position'] + 1} ({c['task']} · {c['method']} · seed {c['seed']}) has no run yet: "
                        f"{why.get(c['status'], c['status'])}", title="No run", severity="warning")
            return
        self.app.open_history(int(c["run_id"]), c.get("best_candidate_id"))

    def action_toggle_failed(self) -> None:
        self.failed_only = not self.failed_only
        self._show_cells(list(self.cells.values()))
        self.notify("only failed cells listed" if self.failed_only else "every cell listed")

    def action_copy(self) -> None:
        c = self.current()
        if c is None or not c.get("best_instruction"):
            self.notify("this cell has no best instruction yet", severity="warning")
            return
        self.app.copy_text(c["best_instruction"])
