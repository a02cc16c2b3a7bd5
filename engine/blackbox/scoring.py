"""Scoring one instruction on the black box: the InstructZero objective.

For each example the endpoint gets the task's evaluation prompt (``Instruction: ...\\n\\nInput: ...\\n\\nOutput:`` by
default) and its answer is scored by the task metric. All examples are asked at once (the client bounds the
concurrency); the client's cache makes a repeated instruction free. The per-example scores are kept, not only the
mean, because the instruction-coupled kernel compares candidates by their score vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.blackbox.client import all_answers
from engine.usage import Usage

if TYPE_CHECKING:
    from engine.blackbox.client import BlackBox
    from engine.tasks import Example, Task


@dataclass
class ScoreResult:
    """The mean score, the score of each example (in order) and the output dicts the history stores."""

    mean: float
    per_example: list[float] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        """What scoring cost (calls paid, calls the cache saved, tokens)."""
        return Usage.of_answers(self.outputs)


async def score_instruction(bb: BlackBox, task: Task, instruction: str, examples: Sequence[Example]) -> ScoreResult:
    """Ask the black box every example under ``instruction`` and score the answers with the task's metric.

    If one example fails for good (an :class:`~engine.errors.EndpointError` after the client's retries), the other
    requests are cancelled and the error is raised: a partial mean would be a wrong score, and the cache keeps the
    answers already paid for, so scoring again later costs only what is missing.
    """
    from engine.tasks.metrics import score  # light, but only needed here

    examples = list(examples)
    prompts = [task.prompt(instruction, ex) for ex in examples]
    completions = await all_answers(bb.complete(p) for p in prompts)
    per_example: list[float] = []
    outputs: list[dict[str, Any]] = []
    for i, (ex, c) in enumerate(zip(examples, completions, strict=True)):
        s = float(score(task.metric, c.text, list(ex.answers), getattr(task, "case_sensitive", False)))
        per_example.append(s)
        outputs.append(
            {
                "example_index": i,
                "input": ex.input,
                "answers": list(ex.answers),
                "output": c.text,
                "score": s,
                "cache_hit": c.cache_hit,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
            }
        )
    mean = sum(per_example) / len(per_example) if per_example else 0.0
    return ScoreResult(mean=mean, per_example=per_example, outputs=outputs)
