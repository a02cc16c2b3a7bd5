"""Typed progress events: what a run tells the world while it works.

The runner emits them; the engine server sends them as JSON notifications (:func:`engine.wire.protocol.
notification`); the client turns them back into these dataclasses with :func:`event_from_dict`; the TUI turns
them into Textual messages and the CLI into a progress bar. Light on purpose (stdlib only): both sides of the
process boundary import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class Event:
    type: ClassVar[str] = "event"
    run_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    task: str
    method: str
    budget: int
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    #: engine.cost.Estimate.as_dict(): calls, tokens and money the run will spend at most (about); None from an
    #: older engine, or when it could not be worked out.
    estimate: dict[str, Any] | None = None


@dataclass
class Status(Event):
    """A phase change worth showing (loading the generator, starting the server, scoring on test...)."""

    type: ClassVar[str] = "status"
    message: str


@dataclass
class CandidateProposed(Event):
    type: ClassVar[str] = "candidate_proposed"
    candidate_id: int
    iteration: int
    position: int
    instruction: str


@dataclass
class CandidateScored(Event):
    type: ClassVar[str] = "candidate_scored"
    candidate_id: int
    iteration: int
    position: int
    instruction: str
    dev_score: float
    cache_hit: bool
    duplicate_of: int | None
    evaluations: int
    budget: int
    calls: int
    calls_saved: int
    best_dev_score: float
    best_candidate_id: int
    is_best: bool
    cost: float | None = None  # USD paid so far (0.0 on a local endpoint); None when the prices are unknown
    stopped_after: int | None = None  # racing stopped it after this many dev examples (None: it answered all)


@dataclass
class IterationDone(Event):
    type: ClassVar[str] = "iteration_done"
    iteration: int
    best_dev_score: float
    evaluations: int


@dataclass
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    status: str  # finished | cancelled | stopped (a budget)
    stop_reason: str | None
    summary: dict[str, Any]


@dataclass
class RunFailed(Event):
    type: ClassVar[str] = "run_failed"
    problem: str
    fix: str | None


@dataclass
class RerankProgress(Event):
    type: ClassVar[str] = "rerank_progress"
    candidate_id: int
    done: int
    total: int
    score: float


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStarted, Status, CandidateProposed, CandidateScored, IterationDone, RunFinished, RunFailed,
                RerankProgress)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    cls = EVENT_TYPES[data["type"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
