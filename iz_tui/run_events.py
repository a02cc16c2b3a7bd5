"""A run as the front ends follow it: its phase, and one table from each engine event to the handler that shows it.

Why one table: the run screen and `iz run`'s progress bar react to the same events; with the routing written once,
a new event type is added in one place, and each front end only writes the handlers it shows (a handler it lacks
means it does not show that event).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from engine.wire.events import (
    CandidateProposed,
    CandidateScored,
    Event,
    IterationDone,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)


class RunPhase(StrEnum):
    """Where a run stands as a front end sees it (a finished run's phase is its engine status)."""

    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (RunPhase.FINISHED, RunPhase.CANCELLED, RunPhase.STOPPED, RunPhase.FAILED)

    @property
    def resumable(self) -> bool:
        """Cancelled or failed: ``iz run --resume`` (or the screen's resume key) continues it."""
        return self in (RunPhase.CANCELLED, RunPhase.FAILED)


#: Engine event -> the name of the handler that shows it.
HANDLERS: dict[type[Event], str] = {
    RunStarted: "on_run_started",
    Status: "on_status",
    CandidateProposed: "on_candidate_proposed",
    CandidateScored: "on_candidate_scored",
    IterationDone: "on_iteration_done",
    RunFinished: "on_run_finished",
    RunFailed: "on_run_failed",
}


def route(event: Event, target: Any) -> bool:
    """Call ``target``'s handler for ``event``, if it has one; True when one ran."""
    name = HANDLERS.get(type(event))
    handler = getattr(target, name, None) if name else None
    if handler is None:
        return False
    handler(event)
    return True
