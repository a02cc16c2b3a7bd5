"""The history's filter bar: full-text search, sort order, starred only, in-run repeats, grouping, and task /
method / run / score filters.

It owns its widgets and their quirks (the search is debounced, a search sorts by relevance, filling the pickers
must not count as a change) and tells its screen one thing: :class:`FilterBar.Changed`, the filters to apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Checkbox, Input, Select

from engine.methods import METHODS
from iz_tui.formatting import parse_float
from iz_tui.widgets.light_select import LightSelect

#: Sort orders of the history: (key for History.search, label).
SORTS = (("score", "dev score"), ("relevance", "relevance"), ("rerank", "rerank/test"), ("newest", "newest"),
         ("rank", "manual rank"))


class FilterBar(Vertical):
    """Two rows of filters over the history table."""

    DEFAULT_CSS = """
    FilterBar {
        height: auto;
    }
    """

    class Changed(Message):
        """The person changed a filter: reload with :meth:`FilterBar.filters`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._search_timer: Timer | None = None
        self._loading = False
        self._runs: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filter-row"):
            yield Input(placeholder="search instructions (/)", compact=True, id="search")
            yield LightSelect([(label, key) for key, label in SORTS], value="score", allow_blank=False, compact=True,
                         id="sort")
            yield Checkbox("★ only", compact=True, id="starred")
            yield Checkbox("dups", compact=True, id="dups", tooltip="also list in-run repeats of an instruction (d)")
            yield Checkbox("group", compact=True, id="group", tooltip="each instruction text once, with a count (g)")
        with Horizontal(classes="filter-row", id="filters2"):
            yield LightSelect([], prompt="any task", compact=True, id="f-task")
            yield LightSelect([(m, m) for m in METHODS], prompt="any method", compact=True, id="f-method")
            yield LightSelect([], prompt="any run", compact=True, id="f-run")
            yield Input(placeholder="min", type="number", compact=True, id="f-min", classes="score-box")
            yield Input(placeholder="max", type="number", compact=True, id="f-max", classes="score-box")

    # -- reading ------------------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The filters as :meth:`engine.store.History.search` takes them (``query`` included)."""

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
            "duplicates": self.query_one("#dups", Checkbox).value,
            "group": self.query_one("#group", Checkbox).value,
        }

    #: What :meth:`filters` returns besides the filters proper: how the rows are sorted and shown.
    VIEW_KEYS = frozenset({"order", "duplicates", "group"})

    @property
    def narrowed(self) -> bool:
        """Whether any filter (not the sort order, the repeats or the grouping) is set."""
        return any(v for k, v in self.filters().items() if k not in self.VIEW_KEYS)

    @property
    def starred_only(self) -> bool:
        return self.query_one("#starred", Checkbox).value

    @property
    def grouped(self) -> bool:
        return self.query_one("#group", Checkbox).value

    @property
    def search_box(self) -> Input:
        return self.query_one("#search", Input)

    # -- setting (none of these counts as a change made by the person) ------------------------------------
    def set_runs(self, runs: Sequence[dict[str, Any]]) -> None:
        """Offer these runs, and their tasks, in the pickers; a run or task still listed stays chosen."""
        self._runs = list(runs)
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

    def show_run(self, run_id: int) -> None:
        """Every filter cleared but the run (if it is offered); the rows ungrouped, so each candidate is listed."""
        self._loading = True
        try:
            self.query_one("#search", Input).value = ""
            self.query_one("#f-task", Select).clear()
            self.query_one("#f-method", Select).clear()
            self.query_one("#f-min", Input).value = ""
            self.query_one("#f-max", Input).value = ""
            self.query_one("#starred", Checkbox).value = False
            self.query_one("#group", Checkbox).value = False
            run_sel = self.query_one("#f-run", Select)
            run_sel.value = run_id if any(r["id"] == run_id for r in self._runs) else Select.NULL
        finally:
            self.call_after_refresh(self._done_loading)

    def _done_loading(self) -> None:
        self._loading = False

    def sort_by(self, order: str) -> None:
        """Sort the history this way (a change: the screen reloads)."""
        self.query_one("#sort", Select).value = order

    def cycle_sort(self) -> None:
        keys = [k for k, _ in SORTS]
        self.sort_by(keys[(keys.index(str(self.query_one("#sort", Select).value)) + 1) % len(keys)])

    def focus_search(self) -> None:
        self.search_box.focus()

    def toggle(self, checkbox: str) -> bool:
        """Flip a checkbox (``starred``, ``dups``, ``group``; a change: the screen reloads); its new value."""
        box = self.query_one(f"#{checkbox}", Checkbox)
        box.toggle()
        return box.value

    # -- the person's changes -----------------------------------------------------------------------------
    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(0.15, self._search_now)

    def _search_now(self) -> None:
        """A search sorts by relevance; clearing it goes back to the dev score."""
        sort = self.query_one("#sort", Select)
        if self.query_one("#search", Input).value.strip():
            if sort.value == "score":
                sort.value = "relevance"  # its Changed reloads
                return
        elif sort.value == "relevance":
            sort.value = "score"
            return
        self.post_message(self.Changed())

    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(Input.Changed, ".score-box")
    def _filter_changed(self, event: Message) -> None:
        event.stop()
        if not self._loading and self.is_mounted:
            self.post_message(self.Changed())
