"""The counters of one run, and the event sink type every part of a run reports through.

Rebuilt from the store on resume (engine.runner ``_load_state``), so they are never the only copy of anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.config import EndpointProfile, RunSettings
from engine.tasks import Splits, Task
from engine.usage import Usage
from engine.wire.events import Event

Emit = Callable[[Event], None]


def noop(_: Event) -> None:
    return None


@dataclass
class RunState:
    """Counters of one run. Rebuilt from the store on resume, so they are never the only copy."""

    run_id: int
    task: Task
    splits: Splits
    settings: RunSettings
    endpoint_name: str
    profile: EndpointProfile
    instructions: list[str]
    budget: int
    evaluations: int = 0
    evaluations_saved: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds_before: float = 0.0
    started: float = field(default_factory=time.monotonic)
    best_id: int | None = None
    best_score: float = -math.inf
    best_instruction: str | None = None
    best_position: int = 2**62  # the best's place in proposal order (ties go to the earliest)
    stop_reason: str | None = None

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.started

    def totals(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "evaluations_saved": self.evaluations_saved,
            **self.usage.as_dict(),
            "seconds": round(self.seconds, 3),
            "best_candidate_id": self.best_id,
            "best_instruction": self.best_instruction,
            "best_dev_score": None if self.best_id is None else self.best_score,
        }

    @property
    def max_candidates(self) -> int:
        """A cap on proposals: repeats of scored instructions are free, so without one a proposer that keeps
        writing the same few instructions would never spend its budget."""
        return max(3 * self.budget, self.budget + 20)

    @property
    def cost(self) -> float | None:
        """USD paid so far at the profile's prices (0.0 on a local endpoint); None when the prices are unknown."""
        return self.usage.cost(self.profile.prices)

    def budget_hit(self) -> str | None:
        s = self.settings
        if self.evaluations >= self.budget:
            return "evaluations"
        if s.budget_calls is not None and self.usage.calls >= s.budget_calls:
            return "calls"
        if s.budget_tokens is not None and self.usage.tokens >= s.budget_tokens:
            return "tokens"
        cost = self.cost
        if s.budget_cost is not None and cost is not None and cost >= s.budget_cost:
            return "cost"
        return None

    def test_over_cost(self, n_test: int) -> bool:
        """Whether scoring the best on ``n_test`` examples would likely take the run past its ``budget_cost``:
        priced at the mean cost of the run's paid calls so far (unknown, hence no, before any paid call)."""
        cap, cost = self.settings.budget_cost, self.cost
        if cap is None or cost is None or self.usage.calls == 0:
            return False
        return cost + n_test * cost / self.usage.calls > cap
