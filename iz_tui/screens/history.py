"""The history: every candidate of every run, searchable (bm25), filterable, sortable; star, note, rerank, export.

It reads SQLite directly (fast, and the engine's WAL writes never block it) and writes only the user's marks;
a rerank goes through the engine, whose events update the info line as scores arrive.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Checkbox, DataTable, Footer, Header, Input, Select, Static

from engine.errors import IZError
from engine.events import RerankProgress, RunFinished
from iz_tui.messages import EngineEvent, HistoryChanged
from iz_tui.screens.home import METHODS
from iz_tui.screens.modals import ExportModal, NoteModal, RerankChoice, RerankModal
from iz_tui.widgets.common import dedupe_top, fmt_score, parse_float, short

SORTS = (("score", "dev score"), ("relevance", "relevance"), ("rerank", "rerank/test"), ("newest", "newest"),
         ("rank", "manual rank"))


class HistoryScreen(Screen[None]):
    """All candidates, best first."""

    BINDINGS = [
        Binding("slash", "focus_search", "Search", key_display="/"),
        Binding("space", "toggle_select", "Select", key_display="space"),
        Binding("s", "star", "Star"),
        Binding("n", "note", "Note"),
        Binding("r", "rerank", "Rerank"),
        Binding("e", "export", "Export"),
        Binding("c", "copy", "Copy"),
        Binding("v", "compare", "Compare"),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("u", "resume_run", "Resume run", show=False),
        Binding("a", "clear_selection", "Clear selection", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: list[int] = []
        self.rows: dict[int, dict[str, Any]] = {}
        self._pending: tuple[int, int | None] | None = None
        self._reranking = False
        self._search_timer: Timer | None = None
        self._loading = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(classes="filter-row"):
            yield Input(placeholder="search instructions (/)", compact=True, id="search")
            yield Select([(label, key) for key, label in SORTS], value="score", allow_blank=False, compact=True,
                         id="sort")
            yield Checkbox("★ only", compact=True, id="starred")
        with Horizontal(classes="filter-row", id="filters2"):
            yield Select([], prompt="any task", compact=True, id="f-task")
            yield Select([(m, m) for m in METHODS], prompt="any method", compact=True, id="f-method")
            yield Select([], prompt="any run", compact=True, id="f-run")
            yield Input(placeholder="min", type="number", compact=True, id="f-min", classes="score-box")
            yield Input(placeholder="max", type="number", compact=True, id="f-max", classes="score-box")
        yield DataTable(id="hist-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="hist-info")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hist-table", DataTable)
        for label, key, width in (("✓", "sel", 1), ("★", "star", 1), ("id", "id", 4), ("run", "run", 3),
                                  ("task", "task", 10), ("dev", "dev", 5), ("test", "test", 5),
                                  ("rerank", "rerank", 6), ("instruction", "instruction", None)):
            table.add_column(label, key=key, width=width)
        self.app.listen(self, None)  # type: ignore[attr-defined]
        self._reload_filters()
        if self._pending is not None:
            self._apply_pending()
        else:
            self.reload()
        table.focus()

    def on_unmount(self) -> None:
        self.app.unlisten(self)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        """Back from a run or a detail: new runs and marks may have appeared."""
        if self.is_mounted:
            self._reload_filters()
            self.reload()

    # -- data ---------------------------------------------------------------------------------------------
    @property
    def history(self) -> Any:
        return self.app.history  # type: ignore[attr-defined]

    def _reload_filters(self) -> None:
        runs = self.history.runs(limit=200)
        self._runs = runs
        self._loading = True
        try:
            run_sel = self.query_one("#f-run", Select)
            run_val = run_sel.value
            run_sel.set_options([(f"#{r['id']} {r['task']} {r['method']}", r["id"]) for r in runs])
            if run_val is not Select.NULL and any(r["id"] == run_val for r in runs):
                run_sel.value = run_val
            task_sel = self.query_one("#f-task", Select)
            task_val = task_sel.value
            tasks = sorted({r["task"] for r in runs})
            task_sel.set_options([(t, t) for t in tasks])
            if task_val in tasks:
                task_sel.value = task_val
        finally:
            self.call_after_refresh(self._done_loading)

    def _done_loading(self) -> None:
        self._loading = False

    def filters(self) -> dict[str, Any]:
        def val(sel_id: str) -> Any:
            v = self.query_one(sel_id, Select).value
            return None if v is Select.NULL else v

        return {
            "query": self.query_one("#search", Input).value.strip() or None,
            "task": val("#f-task"),
            "method": val("#f-method"),
            "run_id": val("#f-run"),
            "min_score": parse_float(self.query_one("#f-min", Input).value),
            "max_score": parse_float(self.query_one("#f-max", Input).value),
            "starred": self.query_one("#starred", Checkbox).value or None,
            "order": str(self.query_one("#sort", Select).value),
        }

    def reload(self, keep_cursor: bool = True) -> None:
        """Query the history with the current filters and refill the table (cursor stays on the same candidate)."""
        table = self.query_one("#hist-table", DataTable)
        current = self.current_id() if keep_cursor else None
        f = self.filters()
        query = f.pop("query")
        try:
            rows = self.history.search(query, **f)
        except IZError as exc:
            self.query_one("#hist-info", Static).update(f"[red]{escape(exc.problem)}[/] — {escape(exc.fix or '')}")
            return
        self.rows = {r["id"]: r for r in rows}
        table.clear()
        for r in rows:
            table.add_row(*self._cells(r), key=str(r["id"]))
        if current is not None and current in self.rows:
            table.move_cursor(row=table.get_row_index(str(current)))
        self._update_info()

    def _cells(self, r: dict[str, Any]) -> list[Any]:
        return [
            Text("✓", style="bold cyan") if r["id"] in self.selected else "",
            Text("★", style="bold yellow") if r.get("star") else "",
            str(r["id"]),
            str(r["run_id"]),
            short(r["task"], 10),
            fmt_score(r["dev_score"]),
            fmt_score(r.get("test_score")),
            fmt_score(r.get("rerank_score")),
            short(r["instruction"], 200),
        ]

    def current_id(self) -> int | None:
        table = self.query_one("#hist-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # an empty or shrinking table
            return None
        return int(key) if key is not None else None

    def current(self) -> dict[str, Any] | None:
        cid = self.current_id()
        return self.rows.get(cid) if cid is not None else None

    def _update_info(self, extra: str = "") -> None:
        c = self.current()
        n = len(self.rows)
        head = f"{n} candidate{'s' if n != 1 else ''}"
        if self.selected:
            head += f" · {len(self.selected)} selected"
        if n == 0:
            msg = "no candidates match" if any(v for k, v in self.filters().items() if k != "order") else (
                "no runs yet: start one from the home screen (ctrl+n)")
            self.query_one("#hist-info", Static).update(f"{head} · {msg}{extra}")
            return
        if c is None:
            self.query_one("#hist-info", Static).update(head + extra)
            return
        line = f"{head} · #{c['id']} run {c['run_id']} {c['method']} it {c['iteration']}"
        if c.get("note"):
            line += f" · note: {short(c['note'], max(70 - len(line), 10))}"
        self.query_one("#hist-info", Static).update(
            f"{escape(line)}{extra}\n[b]{escape(short(c['instruction'], 150))}[/]")

    @on(DataTable.RowHighlighted, "#hist-table")
    def _row_highlighted(self) -> None:
        self._update_info()

    @on(DataTable.RowSelected, "#hist-table")
    def _row_selected(self) -> None:
        self.action_details()

    # -- filters ------------------------------------------------------------------------------------------
    @on(Input.Changed, "#search")
    def _search_changed(self) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(0.15, self._search_now)

    def _search_now(self) -> None:
        sort = self.query_one("#sort", Select)
        if self.query_one("#search", Input).value.strip():
            if sort.value == "score":
                sort.value = "relevance"  # its Changed reloads
                return
        elif sort.value == "relevance":
            sort.value = "score"
            return
        self.reload()

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#hist-table", DataTable).focus()

    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(Input.Changed, ".score-box")
    def _filter_changed(self) -> None:
        if not self._loading and self.is_mounted:
            self.reload()

    def show_run(self, run_id: int, candidate_id: int | None = None) -> None:
        """Filter to one run and put the cursor on a candidate (used by the run screen and the palette)."""
        self._pending = (run_id, candidate_id)
        if self.is_mounted:
            self._reload_filters()
            self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        run_id, candidate_id = self._pending
        self._pending = None
        self._loading = True
        try:
            self.query_one("#search", Input).value = ""
            self.query_one("#f-task", Select).clear()
            self.query_one("#f-method", Select).clear()
            self.query_one("#f-min", Input).value = ""
            self.query_one("#f-max", Input).value = ""
            self.query_one("#starred", Checkbox).value = False
            run_sel = self.query_one("#f-run", Select)
            run_sel.value = run_id if any(r["id"] == run_id for r in self._runs) else Select.NULL
        finally:
            self.call_after_refresh(self._done_loading)
        self.reload(keep_cursor=False)
        table = self.query_one("#hist-table", DataTable)
        if candidate_id is not None and candidate_id in self.rows:
            table.move_cursor(row=table.get_row_index(str(candidate_id)))
        self._update_info()

    def focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_search(self) -> None:
        self.focus_search()

    def action_cycle_sort(self) -> None:
        sort = self.query_one("#sort", Select)
        keys = [k for k, _ in SORTS]
        sort.value = keys[(keys.index(str(sort.value)) + 1) % len(keys)]

    # -- selection and marks ------------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        cid = self.current_id()
        if cid is None:
            return
        if cid in self.selected:
            self.selected.remove(cid)
        else:
            self.selected.append(cid)
        table = self.query_one("#hist-table", DataTable)
        table.update_cell(str(cid), "sel", Text("✓", style="bold cyan") if cid in self.selected else "")
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)
        self._update_info()

    def action_clear_selection(self) -> None:
        self.selected.clear()
        self.reload()

    def action_star(self) -> None:
        c = self.current()
        if c is None:
            return
        star = not c.get("star")
        self.history.set_mark(c["id"], star=star)
        c["star"] = int(star)
        self.query_one("#hist-table", DataTable).update_cell(str(c["id"]), "star",
                                                            Text("★", style="bold yellow") if star else "")
        self.notify(f"{'starred' if star else 'unstarred'} #{c['id']}")
        if self.query_one("#starred", Checkbox).value:
            self.reload()

    def action_note(self) -> None:
        c = self.current()
        if c is None:
            return

        def save(note: str | None) -> None:
            if note is None:
                return
            self.history.set_mark(c["id"], note=note)
            c["note"] = note or None
            self.notify(f"note saved on #{c['id']}" if note else f"note cleared on #{c['id']}")
            self._update_info()

        self.app.push_screen(NoteModal(c["instruction"], c.get("note")), save)

    def action_details(self) -> None:
        cid = self.current_id()
        if cid is None:
            return
        from iz_tui.screens.detail import CandidateScreen

        self.app.push_screen(CandidateScreen(cid))

    def action_copy(self) -> None:
        c = self.current()
        if c is not None:
            self.app.copy_text(c["instruction"])  # type: ignore[attr-defined]

    def action_resume_run(self) -> None:
        """Continue the highlighted candidate's run if it was cancelled, failed or cut off by a quit."""
        c = self.current()
        run_id = c["run_id"] if c else self._scope_run()
        if run_id is None:
            return
        run = self.history.run(run_id)
        if run["status"] in ("finished", "stopped"):
            self.notify(f"run {run_id} has {run['status']}: nothing to resume", severity="information")
            return
        from iz_tui.screens.run import RunScreen

        self.app.push_screen(RunScreen(resume_run_id=run_id))

    def action_back(self) -> None:
        if self.app.focused is self.query_one("#search", Input):
            self.query_one("#hist-table", DataTable).focus()
            return
        self.app.pop_screen()

    def on_history_changed(self, message: HistoryChanged) -> None:
        self.reload()

    # -- rerank -------------------------------------------------------------------------------------------
    def _scope_run(self) -> int | None:
        run = self.filters()["run_id"]
        if run is not None:
            return int(run)
        c = self.current()
        return c["run_id"] if c else None

    def action_rerank(self) -> None:
        if self._reranking:
            self.notify("a rerank is already going on", severity="warning")
            return
        runs = self.history.runs(limit=200)
        if not runs:
            self.notify("no runs yet: start one first", severity="warning")
            return
        endpoints = sorted(self.app.config.endpoints)  # type: ignore[attr-defined]

        def go(choice: RerankChoice | None) -> None:
            if choice is not None:
                self.rerank(choice)

        self.app.push_screen(RerankModal(list(self.selected), runs, self._scope_run(), endpoints), go)

    def rerank(self, choice: RerankChoice) -> None:
        ids = list(choice.candidate_ids)
        if not ids and choice.run_id is not None:
            ids = dedupe_top(self.history.candidates(choice.run_id, status="scored"), choice.top_k)
        if not ids:
            self.notify("nothing to rerank", severity="warning")
            return
        self._run_rerank(ids, choice)

    @work(exclusive=True, group="rerank")
    async def _run_rerank(self, ids: list[int], choice: RerankChoice) -> None:
        self._reranking = True
        self._update_info(f" · reranking {len(ids)} on {choice.split}…")
        try:
            client = await self.app.engine()  # type: ignore[attr-defined]
            results = await client.rerank(ids, split=choice.split, n_examples=choice.n_examples,
                                          endpoint=choice.endpoint)
        except IZError as exc:
            from iz_tui.widgets.common import friendly_error

            head, fix = friendly_error(exc.problem, exc.fix)
            self.notify(f"{head}\nWhat to do: {fix}", title="Rerank failed", severity="error", timeout=20)
            self._update_info()
            return
        finally:
            self._reranking = False
        self.rerank_results = results
        best = results[0] if results else None
        if best is not None:
            self.notify(f"best: #{best['candidate_id']} {fmt_score(best['rerank_score'])} on {best['n_examples']} "
                        f"{best['split']} examples ({best['endpoint']})", title=f"Reranked {len(results)}")
        if choice.run_id is not None and not choice.candidate_ids:
            self.show_run(choice.run_id)
        self.query_one("#sort", Select).value = "rerank"
        self.reload()
        self.app.history_changed(ids)  # type: ignore[attr-defined]

    def on_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        if isinstance(ev, RerankProgress):
            self._update_info(f" · rerank {ev.done}/{ev.total}: #{ev.candidate_id} → {fmt_score(ev.score)}")
        elif isinstance(ev, RunFinished) and self.is_current:
            self._reload_filters()  # a run going on in the background has finished: show its candidates
            self.reload()

    # -- export and compare -------------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.selected:
            what, stem = f"the {len(self.selected)} selected candidates", "iz-selection"
            kwargs: dict[str, Any] = {"candidate_ids": list(self.selected)}
        else:
            run_id = self._scope_run()
            if run_id is None:
                self.notify("nothing to export yet", severity="warning")
                return
            what, stem = f"run {run_id} (all its candidates)", f"iz-run-{run_id}"
            kwargs = {"run_id": run_id}

        def go(result: tuple[str, str] | None) -> None:
            if result is not None:
                fmt, path = result
                self.app.export(path, fmt, **kwargs)  # type: ignore[attr-defined]

        self.app.push_screen(ExportModal(what, stem), go)

    def action_compare(self) -> None:
        from iz_tui.screens.compare import pick_and_compare

        runs_of_selection = sorted({self.rows[c]["run_id"] for c in self.selected if c in self.rows})
        pick_and_compare(self.app, runs_of_selection)
