"""Helpers for Pilot tests: wait for a condition, read a widget's text."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static


async def wait_for(pilot: Pilot[Any], cond: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Pause the pilot until ``cond()`` is truthy (returns it) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except Exception:  # the widget may not be mounted yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or cond}")
        await pilot.pause(0.05)


def ready(screen: Any, cls: type) -> Any:
    """The screen once it is a ``cls`` whose widgets are composed and mounted (a pushed modal takes a few
    frames to compose on a busy machine; querying it earlier raises NoMatches)."""
    if isinstance(screen, cls) and screen.is_mounted and screen.query("Input, Button, Select, DataTable"):
        return screen
    return None


def text_of(app: Any, selector: str) -> str:
    """The plain text a Static shows."""
    widget = app.screen.query_one(selector, Static)
    return str(widget.render())


def screen_text(app: Any) -> str:
    """Everything on the screen as plain text (what a person reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)
