"""The footer of every screen: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer removes and mounts all its keys again on every change of the screen's bindings, and the screen
reports one on each focus change and each ``refresh_bindings()``: six rebuilds (each styling and laying out a dozen
widgets) while the history screen opens, one per new best candidate during a run. This one rebuilds at most once
a refresh, and not at all when the keys it would show (key, label, enabled, tooltip) are those it shows already.
A screen underneath another hears of the new screen's focus changes too: the home screen's plain Footer rebuilt
its 14 keys every time the history opened over it.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

try:  # a private name: without it the keys are simply left as Textual makes them
    from textual.widgets._footer import FooterKey
except ImportError:  # pragma: no cover - depends on the Textual release
    FooterKey = None  # type: ignore[assignment,misc]


class QuietFooter(Footer):
    """A Footer that skips rebuilds that would show the same keys."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[Any, ...] | None = None  # what the last compose showed
        self._rebuild_pending = False

    def _keys_shown(self) -> tuple[Any, ...]:
        """What :meth:`compose` would show now (it reads the same bindings)."""
        bindings = self.screen.active_bindings
        return (self.compact, self.show_command_palette, tuple(
            (key, b.binding.action, b.binding.description, b.binding.key_display, b.binding.group, b.enabled,
             b.tooltip) for key, b in bindings.items() if b.binding.show or key == self.app.COMMAND_PALETTE_BINDING))

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys_shown()
        for widget in super().compose():
            if FooterKey is not None and isinstance(widget, FooterKey) and not widget.has_class("-command-palette"):  # that one stays compact
                # A FooterKey starts compact and is then bound to the footer's (not compact): its class is added
                # and removed again as it mounts, each a restyle, for every key of every rebuild (~45 a history
                # opening). Starting it as the footer is makes both no-ops.
                widget.set_reactive(FooterKey.compact, self.compact)
                widget.set_class(self.compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        if self.is_attached and self._keys_shown() != self._shown:
            await self.recompose()
