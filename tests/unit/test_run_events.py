"""The run's phase and the one table from engine event to handler (iz_tui/run_events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.wire import events as ev_mod
from engine.wire.events import CandidateScored, Event, RunFailed, Status
from iz_tui.run_events import HANDLERS, RunPhase, route


def test_phases_say_what_has_ended_and_what_can_resume() -> None:
    assert {p for p in RunPhase if p.ended} == {"finished", "cancelled", "stopped", "failed"}
    assert {p for p in RunPhase if p.resumable} == {"cancelled", "failed"}
    assert RunPhase("finished") == "finished"  # an engine status is a phase
    with pytest.raises(ValueError):
        RunPhase("sleeping")


def test_every_event_a_run_sends_has_a_handler_name() -> None:
    sent = {c for c in vars(ev_mod).values()
            if isinstance(c, type) and issubclass(c, Event) and c is not Event and c.__name__.startswith(
                ("Run", "Candidate", "Iteration", "Status"))}
    assert sent <= set(HANDLERS), sent - set(HANDLERS)


def test_route_calls_the_handler_the_target_has_and_skips_the_others() -> None:
    seen: list[Any] = []

    class Target:
        def on_status(self, e: Status) -> None:
            seen.append(e)

    assert route(Status(1, "hello"), Target()) is True
    assert route(RunFailed(1, "boom", "fix"), Target()) is False
    assert [e.message for e in seen] == ["hello"]
    assert HANDLERS[CandidateScored] == "on_candidate_scored"
