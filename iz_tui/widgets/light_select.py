"""A Select that is two widgets instead of six until it is opened, for screens that hold several.

Textual's Select draws its closed state with a row of three Statics inside a container, next to the option list
it opens: six widgets to build, style and lay out, about 35 ms each Select on the machine of
``bench/history_scale.py``, so the history's four pickers were a large part of the time to its first page. This
one draws the closed state (the choice or the placeholder, and the arrow) itself, in one widget, and mounts
Select's own option list the first time it opens, so keys, mouse, messages, values and ``query_one(..., Select)``
all behave as Select's.

It relies on private parts of Textual's Select (the ``SelectCurrent`` and ``SelectOverlay`` it composes, the
watchers and the handler that expect the option list to be there); if a release changes them, :data:`SUPPORTED`
is False and :class:`LightSelect` is a plain Select (correct, only heavier).
"""

from __future__ import annotations

import inspect
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual import on
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
        and all(callable(getattr(Select, name, None)) for name in (
            "compose", "_setup_options_renderables", "_watch_value", "_watch_prompt", "action_show_overlay"))
    )

if SUPPORTED:

    class OneLineCurrent(SelectCurrent):
        """The closed Select as one line: the choice (or the dimmed placeholder), then the arrow (inside
        SelectCurrent's border when the Select is not compact)."""

        def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
            return 1  # SelectCurrent's ``height: auto`` would measure its children: it has none

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
        """Select, drawn closed by one widget, with its option list mounted the first time it opens."""

        def compose(self) -> ComposeResult:
            yield OneLineCurrent(self.prompt)

        def _overlay(self) -> SelectOverlay | None:
            overlays = self.query_children(SelectOverlay)
            return overlays.first() if overlays else None

        async def _open_list(self) -> None:
            """Mount the option list (once) before Select opens it."""
            if self._overlay() is None:
                overlay = SelectOverlay(type_to_search=self._type_to_search)
                overlay.compact = self.compact  # Select binds it in compose; data_bind only works there
                await self.mount(overlay)
                super()._setup_options_renderables()

        def _setup_options_renderables(self) -> None:
            if self._overlay() is not None:
                super()._setup_options_renderables()

        def _watch_value(self, value: Any) -> None:
            if self._overlay() is not None:
                super()._watch_value(value)  # it also highlights the value in the option list
                return
            # No option list yet (Select's own would fail looking for it): only the line and the message; the
            # list highlights the value when it opens.
            self._value = value
            currents = self.query_children(OneLineCurrent)
            if not currents:
                return
            label = next((prompt for prompt, option in self._options if option == value), None)
            if value == self.NULL or label is not None:
                currents.first().update(self.NULL if value == self.NULL else label)
            self.post_message(self.Changed(self, value))

        def _watch_prompt(self, prompt: str) -> None:
            if self._overlay() is not None:
                super()._watch_prompt(prompt)
            elif self.is_mounted:
                current = self.query_one(OneLineCurrent)
                current.placeholder = prompt
                if self.value == self.NULL:
                    current.update(self.NULL)

        async def action_show_overlay(self) -> None:
            await self._open_list()
            super().action_show_overlay()

        @on(SelectCurrent.Toggle)
        async def _toggle_with_a_list(self, event: SelectCurrent.Toggle) -> None:
            event.stop()
            event.prevent_default()  # Select's own handler would toggle before the list exists
            await self._open_list()
            self.expanded = not self.expanded

else:  # pragma: no cover - depends on the Textual release

    class LightSelect(Select[Any]):  # type: ignore[no-redef]
        """A plain Select (this Textual's Select is not the one LightSelect was written against)."""
