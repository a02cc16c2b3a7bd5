"""The history's table: one candidate a row (keyed by its id), the rows' data, the cursor and the selection.

It only shows what it is given (:meth:`HistoryTable.fill`) and keeps the marks it draws in step; reading the
history and writing marks are the screen's job. An in-run repeat (``duplicate_of`` set, listed when asked for) is
drawn dim with ``= #<original>`` before its text: its score is the original's, reused. Grouped rows (one per
instruction text, ``group_count`` set) get a count column, ``×3``; each is keyed by the group's best candidate.

Rows are added a page at a time (:data:`PAGE`): the DataTable measures every cell of every row it is given, and a
screen shows about thirty, so a page of 500 candidates costs five times what the person sees. The rest wait in
:attr:`HistoryTable.candidates` (which the counts and the selection read) and are added as the cursor or the
scroll nears the last added row, on ``ctrl+end``, and when :meth:`HistoryTable.move_to` asks for one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.widgets import DataTable

from iz_tui.formatting import fmt_score, short
from iz_tui.widgets.stable_table import StableTable

#: (label, column key, width; None takes the rest)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("✓", "sel", 1), ("★", "star", 1), ("id", "id", 6), ("run", "run", 4), ("task", "task", 10), ("dev", "dev", 5),
    ("test", "test", 5), ("rerank", "rerank", 6), ("instruction", "instruction", None),
)
#: The columns of grouped rows: the count after the id (of the group's best candidate).
GROUP_COLUMNS = (*COLUMNS[:3], ("×", "count", 4), *COLUMNS[3:])
#: Rows added at first and at a time after; more are added when the cursor comes within MARGIN of the last one.
PAGE = 100
MARGIN = 40


def _check(on: bool) -> Text:
    return Text("✓", style="bold cyan") if on else Text()


def _star(on: bool) -> Text:
    return Text("★", style="bold yellow") if on else Text()


class HistoryTable(StableTable):
    """Candidates, best first (or in the order given)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        #: The listed candidates' data, by id, in the table's order (rows are added from it a page at a time).
        self.candidates: dict[int, dict[str, Any]] = {}
        self._order: list[int] = []  # the candidates' ids in order; the first ``_added`` are rows of the table
        self._added = 0
        self._more_pending = False
        #: Selected candidate ids, in the order they were selected (kept across reloads).
        self.selected: list[int] = []
        #: Whether the rows are groups of identical instructions (the count column is shown).
        self.grouped = False

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for label, key, width in GROUP_COLUMNS if self.grouped else COLUMNS:
            self.add_column(label, key=key, width=width)

    # -- content ------------------------------------------------------------------------------------------
    def fill(self, rows: Sequence[dict[str, Any]], keep_cursor: bool = True, grouped: bool = False) -> None:
        """Show these candidates (``grouped``: rows of :meth:`History.search` with ``group=True``); the cursor
        stays on the same candidate when it is still listed."""
        current = self.current_id() if keep_cursor else None
        self.candidates = {r["id"]: r for r in rows}
        self._order = list(self.candidates)
        self._added = 0
        self.clear(columns=grouped != self.grouped)
        if grouped != self.grouped:
            self.grouped = grouped
            self._add_columns()
        self.add_more(PAGE)
        if current is not None:
            self.move_to(current)

    @property
    def all_added(self) -> bool:
        """Whether every listed candidate is a row of the table."""
        return self._added >= len(self._order)

    def add_more(self, n: int = PAGE) -> None:
        """Add the next ``n`` listed candidates as rows."""
        end = min(self._added + n, len(self._order))
        candidates = self.candidates
        for cid in self._order[self._added:end]:
            self.add_row(*self._cells(candidates[cid]), key=str(cid))
        self._added = end

    @on(DataTable.RowHighlighted)
    def _near_the_end(self) -> None:
        if not self.all_added and self.cursor_row >= self._added - MARGIN:
            self.add_more()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if (not self.all_added and not self._more_pending and self.max_scroll_y > 0
                and new_value >= self.max_scroll_y - self.size.height):
            self._more_pending = True  # one page per approach to the end, however many scroll steps it takes
            self.call_later(self._scrolled_near_the_end)

    def _scrolled_near_the_end(self) -> None:
        self._more_pending = False
        self.add_more()

    def action_scroll_bottom(self) -> None:
        """``ctrl+end``: the last listed candidate, not the last added row."""
        self.add_more(len(self._order))
        super().action_scroll_bottom()

    def _cells(self, r: dict[str, Any]) -> list[Any]:
        dup = r.get("duplicate_of")
        style = "dim" if dup else ""
        text = Text(short(r["instruction"], 200), style=style)  # not markup: "[input]" must show as written
        if dup:
            text = Text.assemble((f"= #{dup} ", "italic"), text, style=style)
        cells: list[Any] = [
            _check(r["id"] in self.selected),
            _star(bool(r.get("star"))),
            Text(str(r["id"]), style=style),
            Text(str(r["run_id"]), style=style),
            Text(short(r["task"], 10), style=style),
            # a raced-out candidate's dev score is the mean of part of the dev set: dimmed, said in the status line
            Text(fmt_score(r["dev_score"]), style="dim italic" if r.get("stopped_early") else style),
            Text(fmt_score(r.get("test_score"))),  # Text, not str: a str cell is parsed as markup on every repaint
            Text(fmt_score(r.get("rerank_score"))),
            text,
        ]
        if self.grouped:
            n = r.get("group_count") or 1
            cells.insert(3, Text(f"×{n}", style="bold" if n > 1 else "dim"))
        return cells

    def move_to(self, candidate_id: int) -> bool:
        """Put the cursor on a candidate if it is listed."""
        if candidate_id not in self.candidates:
            return False
        if str(candidate_id) not in self.rows:
            self.add_more(self._order.index(candidate_id) + 1 - self._added + MARGIN)
        self.move_cursor(row=self.get_row_index(str(candidate_id)))
        return True

    # -- the cursor ---------------------------------------------------------------------------------------
    def current_id(self) -> int | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # an empty or shrinking table
            return None
        return int(key) if key is not None else None

    def current(self) -> dict[str, Any] | None:
        cid = self.current_id()
        return self.candidates.get(cid) if cid is not None else None

    # -- marks --------------------------------------------------------------------------------------------
    def toggle_selected(self) -> int | None:
        """Select or unselect the highlighted candidate and move to the next row; its id, or None."""
        cid = self.current_id()
        if cid is None:
            return None
        if cid in self.selected:
            self.selected.remove(cid)
        else:
            self.selected.append(cid)
        self.update_cell(str(cid), "sel", _check(cid in self.selected))
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)
        return cid

    def show_star(self, candidate_id: int, star: bool) -> None:
        """Draw a candidate's star as stored."""
        c = self.candidates.get(candidate_id)
        if c is None:
            return
        c["star"] = int(star)
        if str(candidate_id) in self.rows:  # else drawn from ``c`` when its row is added
            self.update_cell(str(candidate_id), "star", _star(star))

    def selected_runs(self) -> list[int]:
        """The runs the selected candidates belong to, in id order."""
        return sorted({self.candidates[c]["run_id"] for c in self.selected if c in self.candidates})

    # -- the line under the table -------------------------------------------------------------------------
    def info(self, narrowed: bool, extra: str = "") -> str:
        """Counts and the highlighted candidate in full (markup); ``narrowed``: whether filters are set."""
        n = len(self.candidates)
        head = (f"{n} instruction{'s' if n != 1 else ''} (grouped)" if self.grouped
                else f"{n} candidate{'s' if n != 1 else ''}")
        if self.selected:
            head += f" · {len(self.selected)} selected"
        if n == 0:
            msg = "no candidates match" if narrowed else "no runs yet: start one from the home screen (ctrl+n)"
            return f"{head} · {msg}{extra}"
        c = self.current()
        if c is None:
            return head + extra
        line = f"{head} · #{c['id']} run {c['run_id']} {c['method']} it {c['iteration']}"
        if c.get("duplicate_of"):
            line += f" · repeats #{c['duplicate_of']}"
        if c.get("decoding") == "sampled":
            line += " · sampled"
        if c.get("stopped_early"):
            line += f" · raced out after {len(c.get('scores') or [])} dev examples"
        if c.get("note"):
            line += f" · note: {short(c['note'], max(70 - len(line), 10))}"
        return f"{escape(line)}{extra}\n[b]{escape(short(c['instruction'], 150))}[/]"
