"""A DataTable that keeps the rendering of the cells that did not change.

Textual's DataTable keys its render caches on a counter that every added row, updated cell and resize bumps, so
after any of them the next frame renders every visible cell again (a Rich render each, a millisecond or so):
a run adding candidates and scoring them every few milliseconds repaints the whole candidates table each frame,
and the keys pressed meanwhile wait. This one keys the rendered cell on what it shows instead: the cell (and how
many times it was updated), its place, its width and the styles it is drawn with. Anything that moves or restyles
cells (clearing, sorting, removing, adding a column, a style or theme change, the options Textual clears its own
caches for) starts afresh.

It relies on one private method of DataTable, ``_render_cell``; if a Textual release changes its signature, the
table is a plain DataTable (correct, only slower).
"""

from __future__ import annotations

import inspect
from typing import Any

from rich.style import Style
from textual.cache import LRUCache
from textual.widgets import DataTable

_EXPECTED = ["self", "row_index", "column_index", "base_style", "width", "cursor", "hover"]


def _supported() -> bool:
    method = getattr(DataTable, "_render_cell", None)
    if method is None:
        return False
    try:
        return list(inspect.signature(method).parameters) == _EXPECTED
    except (TypeError, ValueError):
        return False


SUPPORTED = _supported()


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
                lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
                self._kept.set(key, lines)
            return lines

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
