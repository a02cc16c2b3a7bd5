"""Textual messages the TUI passes around.

The engine's typed events (:mod:`engine.wire.events`) arrive on the app's event loop through the
:class:`engine.wire.client.EngineClient` callback; the app wraps each one in :class:`EngineEvent` and posts it to the
screens that listen for that run, so widgets never talk to the engine directly.
"""

from __future__ import annotations

from textual.message import Message

from engine.wire.events import Event


class EngineEvent(Message):
    """One progress event from the engine (run started, candidate scored, run finished, rerank progress...)."""

    bubble = False  # addressed to one screen; the app already saw it

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class HistoryChanged(Message):
    """Marks or scores changed (a star, a note, a rerank): screens showing the history should reload."""

    bubble = False

    def __init__(self, candidate_ids: list[int] | None = None) -> None:
        super().__init__()
        self.candidate_ids = candidate_ids or []
