"""The history: every candidate of every run, searchable (bm25), filterable, sortable; star, note, rerank, export.

It reads SQLite directly (fast, and the engine's WAL writes never block it) and writes only the user's marks;
a rerank goes through the engine, whose events update the info line as scores arrive.

The screen is composition and actions: the filters are a :class:`FilterBar` (which says when they change), the
list a :class:`HistoryTable` (rows, cursor, selection); other screens are opened through the app.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input, Static

from engine.errors import IZError
from engine.wire.events import RerankProgress, RunFinished
from iz_tui.formatting import dedupe_top, fmt_score, friendly_error
from iz_tui.messages import EngineEvent, HistoryChanged
from iz_tui.screens.base import BaseScreen
from iz_tui.screens.modals import ExportModal, NoteModal, RerankChoice, RerankModal
from iz_tui.widgets.filter_bar import FilterBar
from iz_tui.widgets.footer import QuietFooter
from iz_tui.widgets.history_table import HistoryTable


class HistoryScreen(BaseScreen[None]):
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
        Binding("b", "side_by_side", "Side by side"),
        Binding("d", "toggle_duplicates", "Dups"),
        Binding("g", "toggle_group", "Group"),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("u", "resume_run", "Resume run", show=False),
        Binding("a", "clear_selection", "Clear selection", show=False),
        Binding("w", "app.sweeps", "Sweeps", show=False),
        Binding("escape", "back", "Back"),
    ]

    #: The table has the focus from the start (Textual would focus the search box first, then on_mount the table:
    #: two focus changes, each restyling the screen).
    AUTO_FOCUS = "#hist-table"

    filter_bar = getters.query_one("#hist-filters", FilterBar)
    table = getters.query_one("#hist-table", HistoryTable)

    def __init__(self) -> None:
        super().__init__()
        self._pending: tuple[int, int | None] | None = None
        self._reranking = False
        self.rerank_results: list[dict[str, Any]] = []
        self._run_ids: list[int] = []
        self._data_version: int | None = None
        self._shown_filters: dict[str, Any] | None = None  # the filters of the page on show
        self._just_mounted = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterBar(id="hist-filters")
        yield HistoryTable(id="hist-table")
        yield Static("", id="hist-info")
        yield QuietFooter()

    def on_mount(self) -> None:
        self.app.listen(self, None)
        self._run_ids = self._set_runs()
        if self._pending is not None:
            self._apply_pending()
        else:
            self.reload()
        self.table.focus()
        self._data_version = self.history_version()
        self.set_interval(self.POLL_S, self._poll)

    #: How often the screen looks for changes another process committed (a run in an engine, another iz).
    POLL_S = 1.0

    def _set_runs(self) -> list[int]:
        runs = self.history.runs(limit=200)
        self.filter_bar.set_runs(runs)
        return [r["id"] for r in runs]


    def _poll(self) -> None:
        """Show what was written meanwhile: a run going on in this app's engine or in another process (SQLite's
        data_version changes whenever another connection commits, so an idle history costs one pragma a tick)."""
        if not self.is_current:
            return
        version = self.history_version()
        if version is None or version == self._data_version:
            return
        self._data_version = version
        if [r["id"] for r in self.history.runs(limit=200)] != self._run_ids:
            self._run_ids = self._set_runs()  # a new run: offer it in the run filter too
        self.reload()

    def on_unmount(self) -> None:
        self.app.unlisten(self)

    def on_screen_resume(self) -> None:
        """Back from a run or a detail: new runs and marks may have appeared. (The resume that follows the first
        mount has nothing new to show: on_mount has just loaded the page.)"""
        if self._just_mounted:
            self._just_mounted = False
            return
        if self.is_mounted:
            self._run_ids = self._set_runs()
            self.reload()

    # -- what the table shows -----------------------------------------------------------------------------
    def reload(self, keep_cursor: bool = True) -> None:
        """Query the history with the current filters and refill the table (cursor stays on the same candidate)."""
        f = self.filter_bar.filters()
        self._shown_filters = dict(f)
        query = f.pop("query")
        try:
            rows = self.history.search(query, **f)
        except IZError as exc:
            self.query_one("#hist-info", Static).update(f"[red]{escape(exc.problem)}[/] — {escape(exc.fix or '')}")
            return
        self.table.fill(rows, keep_cursor, grouped=bool(f["group"]))
        self._update_info()

    def _update_info(self, extra: str = "") -> None:
        self.query_one("#hist-info", Static).update(self.table.info(self.filter_bar.narrowed, extra))

    @on(DataTable.RowHighlighted, "#hist-table")
    def _row_highlighted(self) -> None:
        self._update_info()

    @on(DataTable.RowSelected, "#hist-table")
    def _row_selected(self) -> None:
        self.action_details()

    @on(FilterBar.Changed)
    def _filters_changed(self) -> None:
        # Filling the pickers can report a change that changes nothing: a page costs a query and a table fill
        # (hundreds of rows measured by the DataTable), so only a real change reloads (bench/history_scale.py).
        if self.is_mounted and self.filter_bar.filters() != self._shown_filters:
            self.reload()

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.table.focus()

    def show_run(self, run_id: int, candidate_id: int | None = None) -> None:
        """Filter to one run and put the cursor on a candidate (used by the run screen and the palette)."""
        self._pending = (run_id, candidate_id)
        if self.is_mounted:
            self._run_ids = self._set_runs()
            self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        run_id, candidate_id = self._pending
        self._pending = None
        self.filter_bar.show_run(run_id)
        self.reload(keep_cursor=False)
        if candidate_id is not None:
            self.table.move_to(candidate_id)
        self._update_info()

    # -- filters ------------------------------------------------------------------------------------------
    def action_focus_search(self) -> None:
        self.filter_bar.focus_search()

    def action_cycle_sort(self) -> None:
        self.filter_bar.cycle_sort()

    def action_toggle_duplicates(self) -> None:
        """List in-run repeats too (dim, ``= #original``: they reuse the original's score), or hide them again."""
        shown = self.filter_bar.toggle("dups")
        self.notify("in-run repeats listed (dim, = #original)" if shown else "in-run repeats hidden")

    def action_toggle_group(self) -> None:
        """Each instruction text once (across runs), with a count and the group's best scores, or every row."""
        grouped = self.filter_bar.toggle("group")
        self.notify("identical instructions grouped (× count; enter opens the best)" if grouped
                    else "every candidate listed")

    # -- selection and marks ------------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        if self.table.toggle_selected() is not None:
            self._update_info()

    def action_clear_selection(self) -> None:
        self.table.selected.clear()
        self.reload()

    def action_star(self) -> None:
        c = self.table.current()
        if c is None:
            return
        star = not c.get("star")
        if not self.save_mark(c["id"], star=star):
            return
        self.table.show_star(c["id"], star)
        self.notify(f"{'starred' if star else 'unstarred'} #{c['id']}")
        if self.filter_bar.starred_only:
            self.reload()

    def action_note(self) -> None:
        c = self.table.current()
        if c is None:
            return

        def save(note: str | None) -> None:
            if note is None:
                return
            if not self.save_mark(c["id"], note=note):
                return
            c["note"] = note or None
            self.notify(f"note saved on #{c['id']}" if note else f"note cleared on #{c['id']}")
            self._update_info()

        self.app.push_screen(NoteModal(c["instruction"], c.get("note")), save)

    def action_details(self) -> None:
        cid = self.table.current_id()
        if cid is not None:
            self.app.open_candidate(cid)

    def action_copy(self) -> None:
        c = self.table.current()
        if c is not None:
            self.app.copy_text(c["instruction"])

    def action_resume_run(self) -> None:
        """Continue the highlighted candidate's run if it was cancelled, failed or cut off by a quit."""
        c = self.table.current()
        run_id = c["run_id"] if c else self._scope_run()
        if run_id is None:
            return
        run = self.history.run(run_id)
        if run["status"] in ("finished", "stopped"):
            self.notify(f"run {run_id} has {run['status']}: nothing to resume", severity="information")
            return
        self.app.open_run(run_id)

    def action_back(self) -> None:
        if self.app.focused is self.filter_bar.search_box:
            self.table.focus()
            return
        self.app.pop_screen()

    def on_history_changed(self, message: HistoryChanged) -> None:
        self.reload()

    # -- rerank -------------------------------------------------------------------------------------------
    def _scope_run(self) -> int | None:
        """The run an action without a selection is about: the run filter's, else the highlighted candidate's."""
        run = self.filter_bar.filters()["run_id"]
        if run is not None:
            return int(run)
        c = self.table.current()
        return c["run_id"] if c else None

    def action_rerank(self) -> None:
        if self._reranking:
            self.notify("a rerank is already going on", severity="warning")
            return
        runs = self.history.runs(limit=200)
        if not runs:
            self.notify("no runs yet: start one first", severity="warning")
            return
        endpoints = sorted(self.app.config.endpoints)

        def go(choice: RerankChoice | None) -> None:
            if choice is None:
                return
            ids = list(choice.candidate_ids)
            if not ids and choice.run_id is not None:
                ids = dedupe_top(self.history.candidates(choice.run_id, status="scored"), choice.top_k)
            if ids:
                self._run_rerank(ids, choice)
            else:
                self.notify("nothing to rerank", severity="warning")

        self.app.push_screen(RerankModal(list(self.table.selected), runs, self._scope_run(), endpoints), go)

    @work(exclusive=True, group="rerank")
    async def _run_rerank(self, ids: list[int], choice: RerankChoice) -> None:
        self._reranking = True
        self._update_info(f" · reranking {len(ids)} on {choice.split}…")
        try:
            client = await self.app.engine()
            results = await client.rerank(ids, split=choice.split, n_examples=choice.n_examples,
                                          endpoint=choice.endpoint)
        except IZError as exc:
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
        self.filter_bar.sort_by("rerank")
        self.reload()
        self.app.history_changed(ids)

    def on_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        if isinstance(ev, RerankProgress):
            self._update_info(f" · rerank {ev.done}/{ev.total}: #{ev.candidate_id} → {fmt_score(ev.score)}")
        elif isinstance(ev, RunFinished) and self.is_current:
            self._run_ids = self._set_runs()  # a background run finished: show its rows
            self.reload()

    # -- export and compare -------------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.table.selected:
            what, stem = f"the {len(self.table.selected)} selected candidates", "iz-selection"
            kwargs: dict[str, Any] = {"candidate_ids": list(self.table.selected)}
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
                self.app.export(path, fmt, **kwargs)

        self.app.push_screen(ExportModal(what, stem), go)

    def action_compare(self) -> None:
        self.app.open_compare(self.table.selected_runs())

    def action_side_by_side(self) -> None:
        """The two selected candidates' outputs, example by example."""
        selected = self.table.selected
        if len(selected) != 2:
            self.notify(f"select exactly two candidates (space on each), then press b — {len(selected)} selected",
                        title="Side by side", severity="warning")
            return
        self.app.open_side_by_side(*selected)
