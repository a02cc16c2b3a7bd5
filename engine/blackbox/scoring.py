"""Scoring one instruction on the black box: the InstructZero objective.

For each example the endpoint gets the task's evaluation prompt (``Instruction: ...\\n\\nInput: ...\\n\\nOutput:`` by
default; a task may add a system prompt, pick chat or completions, and set temperature, max tokens and stop
sequences) and its answer is scored by the task metric. All examples are asked at once (the client bounds the
concurrency); the client's cache makes a repeated instruction free. The per-example scores are kept, not only the
mean, because the instruction-coupled kernel compares candidates by their score vectors.

A task scored by a ``judge`` needs a second client, the judge's: each non-empty answer is graded by it, through
the same client machinery, so the judge's calls are cached, joined in flight, retried and counted like any other.
They count in the run's :class:`~engine.usage.Usage` (calls, calls saved, tokens) beside the answers they grade,
so ``budget_calls`` and ``budget_tokens`` cap them too; evaluations are unchanged (one per instruction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.blackbox.client import all_answers
from engine.errors import IZError, TaskError
from engine.usage import Usage

if TYPE_CHECKING:
    from engine.blackbox.client import BlackBox, Completion
    from engine.tasks import Example, Prompt, Task


@dataclass
class ScoreResult:
    """The mean score, the score of each example (in order) and the output dicts the history stores."""

    mean: float
    per_example: list[float] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        """What scoring cost (calls paid, calls the cache saved, tokens), the judge's calls included."""
        judged = [o["judge"] for o in self.outputs if isinstance(o.get("judge"), dict)]
        return Usage.of_answers(self.outputs) + Usage.of_answers(judged)


def _render(task: Task, instruction: str, example: Example, api: str) -> Prompt:
    """The task's prompt for ``example``; a task-like object with only ``prompt`` (tests, older callers) gets a
    plain user message."""
    render = getattr(task, "render", None)
    if render is not None:
        return render(instruction, example, api)
    from engine.tasks.model import Prompt

    return Prompt(api, None, task.prompt(instruction, example))


def _answer(c: Completion) -> dict[str, Any]:
    return {"output": c.text, "cache_hit": c.cache_hit, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "latency_s": c.latency_s}


async def score_instruction(
    bb: BlackBox,
    task: Task,
    instruction: str,
    examples: Sequence[Example],
    *,
    judge: BlackBox | None = None,
) -> ScoreResult:
    """Ask the black box every example under ``instruction`` and score the answers with the task's metric.

    ``bb`` must speak the task's ``api`` when the task sets one (the engine opens such a client); the task's
    system prompt and sampling settings go to :meth:`BlackBox.complete` as per-request overrides, so they are
    part of the cache key. ``judge`` is the client that grades answers of a ``metric = "judge"`` task.

    If one example fails for good (an :class:`~engine.errors.EndpointError` after the client's retries), the other
    requests are cancelled and the error is raised: a partial mean would be a wrong score, and the cache keeps the
    answers already paid for, so scoring again later costs only what is missing. A task's own metric function
    that fails raises a :class:`~engine.tasks.MetricError` naming the example.
    """
    from engine.tasks.metrics import score  # light, but only needed here

    metric = task.metric
    api = bb.profile.api
    wanted = getattr(task, "api", None)
    if wanted and wanted != api:
        raise IZError(f"task {task.name} asks for api = {wanted!r}, but the scoring client speaks {api!r}",
                      "score through the engine (it opens a client with the task's api), or set the profile's api")
    if metric == "judge" and judge is None:
        raise TaskError(f"task {task.name} is scored by a judge, but no judge endpoint was given",
                        "score through the engine (it opens the judge's endpoint), or pass judge=BlackBox(...)")
    overrides = task.blackbox_overrides() if hasattr(task, "blackbox_overrides") else {}
    examples = list(examples)
    prompts = [_render(task, instruction, ex, api) for ex in examples]
    completions = await all_answers(bb.complete(p.user, system=p.system, **overrides) for p in prompts)

    verdicts: dict[int, Completion] = {}
    if metric == "judge" and judge is not None:
        from engine.tasks.user_metrics import JUDGE_MAX_TOKENS, judge_prompt

        rubric = task.judge.rubric if task.judge is not None else ""
        # An empty answer is never right (as under every metric): it is not worth a judge's call.
        graded = [i for i, c in enumerate(completions) if c.text.strip()]
        answers = await all_answers(
            judge.complete(judge_prompt(rubric, examples[i], completions[i].text), temperature=0.0,
                           max_tokens=JUDGE_MAX_TOKENS)
            for i in graded)
        verdicts = dict(zip(graded, answers, strict=True))

    per_example: list[float] = []
    outputs: list[dict[str, Any]] = []
    for i, (ex, c) in enumerate(zip(examples, completions, strict=True)):
        extra: dict[str, Any] = {}
        if metric == "judge":
            s, extra = _judged(verdicts.get(i))
        elif metric == "python":
            from engine.tasks.user_metrics import example_where, python_metric

            s = python_metric(task).score(c.text, ex.answers, example_where(i, len(examples), ex, c.text))
        else:
            s = float(score(metric, c.text, list(ex.answers), getattr(task, "case_sensitive", False)))
        per_example.append(s)
        outputs.append({"example_index": i, "input": ex.input, "answers": list(ex.answers), "output": c.text,
                        "score": s, "cache_hit": c.cache_hit, "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens, "latency_s": c.latency_s, **extra})
    mean = sum(per_example) / len(per_example) if per_example else 0.0
    return ScoreResult(mean=mean, per_example=per_example, outputs=outputs)


def _judged(verdict: Completion | None) -> tuple[float, dict[str, Any]]:
    """A judged answer's score and the judge's reply for the output dict (None: the answer was empty and the judge
    was not asked). A reply without a number scores 0. The history's outputs table has no column for the reply, so
    it lives in the result (and its cost in the candidate's counters), not in the stored outputs."""
    from engine.tasks.user_metrics import judge_verdict

    if verdict is None:
        return 0.0, {"judge": None}
    value = judge_verdict(verdict.text)
    return (value or 0.0), {"judge": {**_answer(verdict), "verdict": value}}
