"""The base of every screen: ``self.app`` typed once as :class:`~iz_tui.app_api.AppAPI`, so screens reach the app's state (the
history, the config, the engine) and its navigation (``open_run``, ``open_history``, ``open_candidate``,
``open_compare``) without casts or ``type: ignore``.

Screens never import each other: they ask the app to open the next one, and the app (the only module that
knows every screen) imports them when they are first shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from textual import events
from textual.screen import Screen

if TYPE_CHECKING:
    from engine.store import History
    from iz_tui.app_api import AppAPI

ResultType = TypeVar("ResultType")


class BaseScreen(Screen[ResultType]):
    """A full screen of the InstructZero app."""

    if TYPE_CHECKING:
        # ``self.app`` typed once, for the type checker, as what a screen may ask of the app (iz_tui/app_api.py,
        # which imports neither the app nor a screen). At run time the inherited ``app`` returns the running IZApp.
        app: AppAPI  # type: ignore[assignment]

    _resumed = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        """The first time a screen is shown, skip Textual's restyle of all of it: every widget was styled when
        it was mounted, moments before, and every change since restyled what it touched (a focus change, a class
        added). Restyling 40 widgets again was a tenth of opening the history. Later resumes are Textual's. Runs
        before Textual's own handler (handlers run in MRO order), which reads ``refresh_styles``."""
        if not self._resumed:
            self._resumed = True
            event.refresh_styles = False

    @property
    def history(self) -> History:
        """The history database the app opened."""
        return self.app.history

    def history_version(self) -> int | None:
        """SQLite's data_version of the history (changes when another connection commits): what a screen polls to
        show work going on elsewhere; None while the file cannot be read (the next tick tries again)."""
        from engine.errors import IZError

        try:
            return self.history.data_version()
        except IZError:
            return None

    def save_mark(self, candidate_id: int, **mark: Any) -> bool:
        """Write a star, note or rank; a history that cannot take it (locked by another program for longer than
        the busy timeout, a full disk) is a notification, not a crash. Returns whether it was saved."""
        from engine.errors import IZError

        try:
            self.history.set_mark(candidate_id, **mark)
        except IZError as exc:
            self.notify(f"{exc.problem}\nWhat to do: {exc.fix}", title="Not saved", severity="error", timeout=15)
            return False
        return True
