"""A Select that is three widgets instead of six, for screens that hold several.

Textual's Select draws its closed state with a row of three Statics inside a container, next to the option list
it opens: six widgets to build, style and lay out, about 35 ms each Select on the machine of
``bench/history_scale.py``, so the history's four pickers were a quarter of the time to its first page. This one
draws the closed state (the choice or the placeholder, and the arrow) itself, in one widget, and opens the same
option list as Select, so keys, mouse, messages, values and ``query_one(..., Select)`` all behave as Select's.

It relies on two private parts of Textual's Select (the ``SelectCurrent`` it composes, whose ``update`` and
``compose`` it replaces); if a release changes them, :data:`SUPPORTED` is False and :class:`LightSelect` is a
plain Select (correct, only heavier).
"""

from __future__ import annotations

import inspect
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Select

try:
    from textual.widgets._select import NoSelection, SelectCurrent, SelectOverlay
except ImportError:  # pragma: no cover - a Textual without these names
    SUPPORTED = False
else:
    SUPPORTED = (
        list(inspect.signature(SelectCurrent.__init__).parameters) == ["self", "placeholder"]
        and list(inspect.signature(SelectCurrent.update).parameters) == ["self", "label"]
        and hasattr(Select, "compose")
    )

if SUPPORTED:

    class OneLineCurrent(SelectCurrent):
        """The closed Select as one line: the choice (or the dimmed placeholder), then the arrow."""

        DEFAULT_CSS = """
        OneLineCurrent {
            height: 1;
        }
        """

        def compose(self) -> ComposeResult:
            return iter(())

        def update(self, label: RenderableType | NoSelection) -> None:
            self.label = label
            self.has_value = label is not Select.NULL
            self.refresh()

        def render(self) -> RenderableType:
            width = max(self.content_size.width - 2, 0)
            if isinstance(self.label, NoSelection):
                shown = Text(self.placeholder, style="dim")
            elif isinstance(self.label, Text):
                shown = self.label.copy()
            else:
                shown = Text(str(self.label))
            shown.truncate(width, overflow="ellipsis", pad=True)
            # Select's ``-expanded`` class restyles this widget, so the arrow is redrawn when the list opens
            expanded = isinstance(self.parent, Select) and self.parent.expanded
            return Text.assemble(shown, (" ▲" if expanded else " ▼", "dim"))

    class LightSelect(Select[Any]):
        """Select, drawn closed by one widget."""

        def compose(self) -> ComposeResult:
            yield OneLineCurrent(self.prompt)
            yield SelectOverlay(type_to_search=self._type_to_search).data_bind(compact=Select.compact)

else:  # pragma: no cover - depends on the Textual release

    class LightSelect(Select[Any]):  # type: ignore[no-redef]
        """A plain Select (this Textual's Select is not the one LightSelect was written against)."""
