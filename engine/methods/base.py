"""What a method is: a proposer of candidate instructions, and what it declares about itself.

Why declarations rather than names: the runner, the cost estimate, provenance, the TUI's form, ``iz run --method``,
sweeps and the quality benchmark all need to know the same few facts about a method (does it load the local
generator, does it score the user's own instructions, are its proposals paid black-box calls, how many evaluations
does a run of it get). Each reads them here, so none of them names a method, and a new method is one module plus
its tests (simonw/llm's registry is the model: the core never names a model).

A method never scores anything: the runner owns budgets, racing, the response cache, deduplication, events and
persistence for every method alike. ``propose`` only writes the next batch of instructions, from what the
:class:`Context` lets it see (the demos, the run's scored candidates, the warm generator, the proposer endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from engine.config import RunSettings
from engine.errors import IZError
from engine.tasks.model import Example, Task

if TYPE_CHECKING:  # the backends import torch: only their type is needed here
    from engine.generators.base import InstructionWriter


@dataclass
class Proposal:
    """A batch of candidates: the texts, and per text the soft prompt that wrote it (None when none did) and how it
    was decoded ("greedy", "sampled", or None)."""

    texts: list[str]
    zs: list[list[float] | None] = field(default_factory=list)
    decodings: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.zs = self.zs or [None] * len(self.texts)
        self.decodings = self.decodings or [None] * len(self.texts)
        if not len(self.texts) == len(self.zs) == len(self.decodings):
            raise ValueError("a proposal needs one z and one decoding per text")


class Context(Protocol):
    """What the runner lets a method see and use while it proposes (engine.runner builds one per batch)."""

    settings: RunSettings
    run_id: int
    task: Task
    #: Demos shown to the proposer, and the dev split the candidates will be scored on (never the test split).
    demos: Sequence[Example]
    dev: Sequence[Example]
    #: The user's instructions (the methods that take them) and how many candidates the run has proposed so far.
    instructions: Sequence[str]
    position: int
    #: The run's prompt style, resolved ("auto" is never seen here).
    style: str

    async def generator(self) -> InstructionWriter:
        """The warm local generator (loaded on first use, with progress shown)."""
        ...

    async def proposer(self) -> tuple[str, Any]:
        """The endpoint that proposes instructions (``ape_endpoint``, else the run's own): its name and client."""
        ...

    def scored(self) -> list[dict[str, Any]]:
        """The run's scored candidates, in the order they were proposed (rows of the history)."""
        ...

    def outputs(self, candidate_id: int, split: str) -> list[dict[str, Any]]:
        """A candidate's stored answers on a split (rows of the history's outputs)."""
        ...

    def taken(self) -> list[str]:
        """Every instruction the run has proposed so far, scored or not."""
        ...

    def status(self, text: str) -> None:
        """A one-line status for the live screen."""
        ...

    def pay(self, answers: Sequence[Any]) -> None:
        """Count black-box completions the method paid for (its proposals) in the run's calls, tokens and cost."""
        ...


class Method:
    """A method's declarations and its proposer. Subclasses set the class attributes and write :meth:`propose`."""

    name: ClassVar[str]
    #: One line for pickers and ``--help``.
    help: ClassVar[str]
    #: Loads the local generator (its model files are checked before a run is recorded; provenance records it).
    needs_generator: ClassVar[bool] = False
    #: Its candidates are the user's own instructions, one evaluation each (``--instruction``, the form's text box).
    takes_instructions: ClassVar[bool] = False
    #: Its proposals are black-box calls on the proposer endpoint, paid like scoring calls (cost estimates).
    pays_for_proposals: ClassVar[bool] = False
    #: Its candidates carry the soft prompt that wrote them (the history's z column; BO methods learn from it).
    soft_prompts: ClassVar[bool] = False
    #: The run settings it reads beyond the common ones (shown with the method's help).
    own_settings: ClassVar[tuple[str, ...]] = ()

    def budget(self, settings: RunSettings, n_instructions: int) -> int:
        """Evaluations a run of this method gets: one per user instruction, else the run's evaluation budget."""
        return n_instructions if self.takes_instructions else settings.evaluations

    def batch(self, settings: RunSettings, iteration: int, room: int) -> int:
        """How many candidates to propose now: the initial design first, then batches, never past the budget."""
        return min(room, max(settings.n_init, 1) if iteration == 0 else settings.batch_size)

    def proposal_calls(self, settings: RunSettings, evaluations: int) -> int:
        """Black-box calls its proposals cost for ``evaluations`` candidates (a cost estimate's upper bound)."""
        return evaluations if self.pays_for_proposals else 0

    def validate(self, settings: RunSettings, instructions: Sequence[str]) -> None:
        """Refuse a run that cannot work, before it is recorded (cheap checks only: nothing is loaded here)."""
        if self.takes_instructions and not instructions:
            raise IZError(f"the {self.name} method needs instructions to score", "pass --instruction TEXT (repeatable)")

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        """The next ``n`` candidates (fewer ends the run: nothing left to propose)."""
        raise NotImplementedError
