"""A run as the front ends follow it: its phase, and one table from each engine event to the handler that shows it.

Why one table: the run screen and `iz run`'s progress bar react to the same events; with the routing written once,
a new event type is added in one place, and each front end only writes the handlers it shows (a handler it lacks
means it does not show that event).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from iz_tui.formatting import paid_calls


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


@dataclass
class RunTotals:
    """What the run has spent, as the engine last reported it (its counters, never worked out here)."""

    budget: int = 0
    evaluations: int = 0
    calls: int = 0
    calls_saved: int = 0
    cost: float | None = None  # USD paid so far; None when the endpoint's prices are unknown
    #: The engine's estimate of the whole run (engine.cost.Estimate.as_dict()), from RunStarted; None before it.
    estimate: dict[str, Any] | None = None

    def update(self, source: CandidateScored | dict[str, Any]) -> None:
        """Take the engine's totals from a scored candidate or from a run summary / history row."""
        if isinstance(source, CandidateScored):
            self.budget = source.budget or self.budget
            self.evaluations, self.calls, self.calls_saved = source.evaluations, source.calls, source.calls_saved
            self.cost = source.cost
            return
        self.evaluations = int(source.get("evaluations") or 0)
        self.calls = int(source.get("calls") or 0)
        self.calls_saved = int(source.get("calls_saved") or 0)
        if "cost" in source:
            self.cost = source["cost"]

    @property
    def spent(self) -> str:
        """The paid calls, worded the same in the counts line and in the result."""
        return paid_calls(self.calls, self.calls_saved)

    def counts(self) -> str:
        return f"{self.evaluations}/{self.budget} evals · {self.spent}"

    def versus_estimate(self) -> str | None:
        """Spent against the engine's estimate, for the line under the counts (plain text); None without one."""
        est = self.estimate
        if not est:
            return None
        from engine.cost import money_text

        if est.get("money") is None:
            money = "cost unknown (set price_input/price_output in the profile)"
        elif est.get("local"):
            money = "free: local endpoint"
        else:
            spent = "?" if self.cost is None else money_text(self.cost)
            money = f"{spent} of ~{money_text(est['money'])}"
        return f"spent {self.calls} of ≤{est.get('calls', 0)} calls estimated · {money}"
