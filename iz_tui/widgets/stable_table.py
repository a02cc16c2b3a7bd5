"""A DataTable that keeps the rendering of the cells that did not change.

Textual's DataTable keys its render caches on a counter that every added row, updated cell and resize bumps, so
after any of them the next frame renders every visible cell again (a Rich render each, a millisecond or so):
a run adding candidates and scoring them every few milliseconds repaints the whole candidates table each frame,
and the keys pressed meanwhile wait. This one keys the rendered cell on what it shows instead: the cell (and how
many times it was updated), its place, its width and the styles it is drawn with. Anything that moves or restyles
cells (clearing, sorting, removing, adding a column, a style or theme change, the options Textual clears its own
caches for) starts afresh.

A cell that is one line of plain ``rich.text.Text`` in a one-line row (every cell of the history's tables) is also
drawn without Rich's general layout (``Styled(Padding(cell))`` through ``Console.render_lines``, about a fifth of a
millisecond a cell, most of the time a page of new rows takes to paint): the text's own segments, cropped to the
column, padded and styled as Textual styles them. Anything else takes Textual's path. The first cells drawn this way
in a process are drawn both ways and compared (``CHECKED_CELLS``); one difference and the fast path is off for the
rest of the process, so a Rich or Textual release that draws cells differently costs speed, not a wrong table.

New rows' column widths are measured the same way: a plain ``Text`` is as wide as its longest line (what Rich's
measure says, without building console options for each cell); checked against Textual's for the first
``CHECKED_WIDTHS`` cells, as above.

It relies on private methods of DataTable (``_render_cell``, ``_get_row_renderables``, ``_get_styles_to_render_cell``,
``_update_dimensions``);
if a Textual release changes their signatures, the table is a plain DataTable (correct, only slower).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.render import measure
from textual.widgets import DataTable

log = logging.getLogger(__name__)

_EXPECTED = {
    "_render_cell": ["self", "row_index", "column_index", "base_style", "width", "cursor", "hover"],
    "_get_row_renderables": ["self", "row_index"],
    "_update_dimensions": ["self", "new_rows"],
    "_get_styles_to_render_cell": [
        "self", "is_header_cell", "is_row_label_cell", "is_fixed_style_cell", "hover", "cursor", "show_cursor",
        "show_hover_cursor", "has_css_foreground_priority", "has_css_background_priority",
    ],
}


def _signature_is(name: str) -> bool:
    method = getattr(DataTable, name, None)
    if method is None:
        return False
    try:
        return list(inspect.signature(getattr(method, "__wrapped__", method)).parameters) == _EXPECTED[name]
    except (TypeError, ValueError):
        return False


SUPPORTED = _signature_is("_render_cell")
#: Whether one-line Text cells are drawn by ``StableTable._fast_cell`` (switched off by the first difference found).
FAST_CELLS = SUPPORTED and _signature_is("_get_row_renderables") and _signature_is("_get_styles_to_render_cell")
#: Cells drawn both ways, per process, before the fast path is trusted.
CHECKED_CELLS = 200
_checks_left = CHECKED_CELLS
WIDTHS_SUPPORTED = _signature_is("_get_row_renderables") and _signature_is("_update_dimensions")
#: Whether new rows' column widths are measured by ``StableTable._text_width`` (off at the first difference).
FAST_WIDTHS = WIDTHS_SUPPORTED
#: Cell widths measured both ways, per process, before the fast measure is trusted.
CHECKED_WIDTHS = 200
_width_checks_left = CHECKED_WIDTHS
_JOINER = Text("\n")


def _visible(lines: list[list[Segment]]) -> list[list[tuple[str, Style | None]]]:
    """What a line shows: its text and styles, with empty segments dropped and same-style neighbours merged."""
    return [[(seg.text, seg.style) for seg in Segment.simplify(line) if seg.text] for line in lines]


class StableTable(DataTable[Any]):
    """A DataTable whose rendered cells survive other cells' updates, new rows and resizes."""

    #: Rendered cells kept (a few screens' worth of every column).
    KEEP = 8192

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kept: LRUCache[tuple[Any, ...], Any] = LRUCache(self.KEEP)  # before DataTable's: it may clear them
        self._cell_versions: dict[tuple[Any, Any], int] = {}
        self._epoch = 0
        super().__init__(*args, **kwargs)

    def _start_afresh(self) -> None:
        self._epoch += 1
        self._cell_versions.clear()
        self._kept.clear()

    if SUPPORTED:

        def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                         cursor: bool = False, hover: bool = False) -> Any:
            if row_index == -1:
                row_key: Any = self._header_row_key
                height = self.header_height
            else:
                row_key = self._row_locations.get_key(row_index)
                row = self.rows.get(row_key) if row_key is not None else None
                height = row.height if row is not None else None
            column_key = self._column_locations.get_key(column_index)
            key = (self._epoch, row_key, column_key, self._cell_versions.get((row_key, column_key), 0),
                   row_index, column_index, height, base_style, width, cursor, hover,
                   getattr(self, "_show_hover_cursor", None), getattr(self, "_pseudo_class_state", None))
            lines = self._kept.get(key)
            if lines is None:
                lines = self._fast_cell(row_index, column_index, base_style, width, cursor, hover, height)
                if lines is None:
                    lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
                self._kept.set(key, lines)
            return lines

        def _fast_cell(self, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool,
                       hover: bool, height: int | None) -> list[list[Segment]] | None:
            """The cell as Textual would draw it, for a one-line Text cell in a one-line row; None for others.

            The first ``CHECKED_CELLS`` of the process are also drawn Textual's way and compared."""
            global FAST_CELLS, _checks_left
            if not FAST_CELLS or row_index < 0 or column_index < 0 or height != 1:
                return None
            lines = self._draw_text_cell(row_index, column_index, base_style, width, cursor, hover)
            if lines is not None and _checks_left > 0:
                _checks_left -= 1
                expected = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
                if _visible(lines) != _visible(expected):
                    FAST_CELLS = False
                    log.warning("table cells: the fast path drew %r unlike Textual (%r); using Textual's",
                                _visible(lines), _visible(expected))
                    return expected
            return lines

        def _draw_text_cell(self, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool,
                            hover: bool) -> list[list[Segment]] | None:
            """What ``Console.render_lines(Styled(Padding(cell)))`` gives for a one-line Text cell, without it."""
            cell = self._get_row_renderables(row_index).cells[column_index]
            padding = self.cell_padding
            inner = width - 2 * padding
            if (type(cell) is not Text or inner < 1 or cell.justify not in (None, "default", "left")
                    or cell.overflow is not None or cell.no_wrap is False or "\n" in cell.plain
                    or "\t" in cell.plain):
                return None
            fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
            component, post = self._get_styles_to_render_cell(
                False, False, fixed, hover, cursor, self.show_cursor, self._show_hover_cursor,
                self.cursor_foreground_priority == "css", self.cursor_background_priority == "css",
            )
            pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component
            text = cell
            if cell_len(cell.plain) > inner:
                text = cell.copy()
                text.truncate(inner)
            blank = pre + post
            line = [Segment(" " * padding, blank)]
            # Joined as Rich's Text.__rich_console__ joins its lines: the text's own style becomes a span of it.
            line.extend(Segment.apply_style(_JOINER.join([text]).render(self.app.console), pre, post))
            line.append(Segment(" " * (inner - cell_len(text.plain) + padding), blank))
            return [line]

    if WIDTHS_SUPPORTED:  # else Textual's own: an override of a changed signature would break its calls

        def _update_dimensions(self, new_rows: Any) -> None:
            """Column widths of new rows without asking Rich to measure each cell: Textual measures every cell
            of every new row (``textual.render.measure``: console options built afresh, the terminal's size asked
            for each time), a tenth of opening the history (900 cells a page). A plain one-line ``Text`` is as
            wide as its longest line, which is what Rich's measure returns for it; other renderables are measured
            as Textual does. Rows with labels or automatic height go Textual's way entirely. The first
            ``CHECKED_WIDTHS`` widths of a process are also measured Textual's way; one difference switches this
            off."""
            global FAST_WIDTHS, _width_checks_left
            rows = list(new_rows)
            placed = []
            for row_key in rows:
                row_index = self._row_locations.get(row_key)
                row = self.rows.get(row_key)
                if row_index is None or row is None:
                    continue  # removed before this ran, as Textual allows
                if not FAST_WIDTHS or row.auto_height or row.label is not None:
                    super()._update_dimensions(rows)
                    return
                placed.append(row_index)
            console = self.app.console
            columns = self.ordered_columns
            for row_index in placed:
                cells = self._get_row_renderables(row_index).cells
                for column, cell in zip(columns, cells, strict=False):  # not strict, as Textual's
                    width = self._text_width(cell) if FAST_WIDTHS else None
                    if width is None:
                        width = measure(console, cell, 1)
                    elif _width_checks_left > 0:
                        _width_checks_left -= 1
                        expected = measure(console, cell, 1)
                        if expected != width:
                            FAST_WIDTHS = False
                            log.warning("table widths: measured %r as %d, Textual as %d; using Textual's",
                                        cell, width, expected)
                            width = expected
                    column.content_width = max(column.content_width, width)
            super()._update_dimensions([])  # the rest as Textual does it: the scrollable size

    @staticmethod
    def _text_width(cell: Any) -> int | None:
        """The width Rich measures for a plain ``Text`` (its longest line), None for anything else."""
        if type(cell) is not Text:
            return None
        return max((cell_len(line) for line in cell.plain.splitlines()), default=0)

    # -- what changes a cell's rendering ------------------------------------------------------------------
    def update_cell(self, row_key: Any, column_key: Any, value: Any, *, update_width: bool = False) -> None:
        super().update_cell(row_key, column_key, value, update_width=update_width)
        cell = (row_key, column_key)
        self._cell_versions[cell] = self._cell_versions.get(cell, 0) + 1

    def _clear_caches(self) -> None:  # what Textual clears its own caches for (options, clear())
        super()._clear_caches()
        self._start_afresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._start_afresh()

    def add_column(self, *args: Any, **kwargs: Any) -> Any:
        key = super().add_column(*args, **kwargs)
        self._start_afresh()
        return key

    def remove_row(self, row_key: Any) -> None:
        super().remove_row(row_key)
        self._start_afresh()

    def remove_column(self, column_key: Any) -> None:
        super().remove_column(column_key)
        self._start_afresh()

    def sort(self, *args: Any, **kwargs: Any) -> Any:
        result = super().sort(*args, **kwargs)
        self._start_afresh()
        return result
