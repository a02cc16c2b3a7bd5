"""What a screen may ask of the app: the app's state (history, config, engine) and its navigation, as a Protocol.

Why a module of its own: every screen needs the app's type, and the app imports every screen (it is the only module
that knows them all). With the type here, which imports no screen and not the app, the screens and the app do not
import each other, not even for the type checker (tests/unit/test_import_cycles.py). :class:`iz_tui.app.IZApp`
implements it (tests/tui/test_app_api.py checks each member is there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from textual.geometry import Size
    from textual.message_pump import MessagePump
    from textual.screen import Screen
    from textual.widget import Widget

    from engine.config import Config
    from engine.store import History
    from engine.wire.client import EngineClient
    from iz_tui.requests import RunRequest


class AppAPI(Protocol):
    """The members of the app that screens and widgets use (Textual's own, then the InstructZero app's)."""

    COMMAND_PALETTE_BINDING: str
    console: Console
    size: Size
    focused: Widget | None

    def push_screen(self, screen: Any, *args: Any, **kwargs: Any) -> Any: ...
    def pop_screen(self) -> Any: ...
    def batch_update(self) -> Any: ...

    @property
    def history(self) -> History: ...
    @property
    def config(self) -> Config: ...
    async def engine(self) -> EngineClient: ...
    def listen(self, target: MessagePump, run_id: int | None = None, replay: bool = True) -> None: ...
    def unlisten(self, target: MessagePump) -> None: ...
    def history_changed(self, candidate_ids: Sequence[int] = ()) -> None: ...
    def copy_text(self, text: str, what: str = "instruction") -> None: ...
    def export(self, path: Path | str, fmt: str, *, run_id: int | None = None,
               candidate_ids: Sequence[int] | None = None) -> Path | None: ...
    def open_run(self, target: RunRequest | int) -> None: ...
    def open_history(self, run_id: int | None = None, candidate_id: int | None = None) -> Screen[Any]: ...
    def open_candidate(self, candidate_id: int) -> None: ...
    def open_compare(self, preferred: Sequence[int] = ()) -> None: ...
    def open_side_by_side(self, a: int, b: int) -> None: ...
    def open_sweep(self, sweep_id: int) -> None: ...


#: The members above, for the test that IZApp has each of them.
MEMBERS = ("COMMAND_PALETTE_BINDING", "console", "size", "focused", "push_screen", "pop_screen", "batch_update",
           "history", "config", "engine", "listen", "unlisten", "history_changed", "copy_text", "export",
           "open_run", "open_history", "open_candidate", "open_compare", "open_side_by_side", "open_sweep")
