"""Scoring one instruction on the black box: the InstructZero objective.

For each example the endpoint gets the task's evaluation prompt (``Instruction: ...\\n\\nInput: ...\\n\\nOutput:`` by
default; a task may add a system prompt, pick chat or completions, and set temperature, max tokens and stop
sequences) and its answer is scored by the task metric. All examples are asked at once (the client bounds the
concurrency), or in waves when the candidate is raced against the run's best (:class:`Race`: a candidate that
can no longer beat it stops costing calls); the client's cache makes a repeated instruction free. The per-example scores are kept, not only the
mean, because the instruction-coupled kernel compares candidates by their score vectors.

A task scored by a ``judge`` needs a second client, the judge's: each non-empty answer is graded by it, through
the same client machinery, so the judge's calls are cached, joined in flight, retried and counted like any other.
They count in the run's :class:`~engine.usage.Usage` (calls, calls saved, tokens) beside the answers they grade,
so ``budget_calls`` and ``budget_tokens`` cap them too; evaluations are unchanged (one per instruction).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.blackbox.client import all_answers
from engine.errors import IZError, TaskError
from engine.usage import Usage

if TYPE_CHECKING:
    from engine.blackbox.client import BlackBox, Completion
    from engine.tasks import Example, Prompt, Task


@dataclass(frozen=True)
class Race:
    """Stop scoring a candidate once it cannot beat ``bar`` (racing): the examples go out in waves of ``wave``,
    and after each wave the best mean still reachable (every remaining example scoring 1) is compared with the
    bar. A candidate that cannot even tie is dropped there, so the calls for its remaining examples are never paid.
    Its recorded score is the mean of the examples it answered, which is at most that bound, so it is below the
    bar and can never become the run's best."""

    bar: float
    wave: int = 5


@dataclass
class ScoreResult:
    """The mean score, the score of each example (in order) and the output dicts the history stores.

    ``n_examples`` is how many examples were asked for; a raced candidate has fewer ``per_example`` scores."""

    mean: float
    per_example: list[float] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    n_examples: int = 0

    @property
    def stopped_early(self) -> bool:
        """Racing dropped it before every example was asked."""
        return len(self.per_example) < self.n_examples

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
    race: Race | None = None,
    received: list[Completion] | None = None,
) -> ScoreResult:
    """Ask the black box every example under ``instruction`` and score the answers with the task's metric.

    ``bb`` must speak the task's ``api`` when the task sets one (the engine opens such a client); the task's
    system prompt and sampling settings go to :meth:`BlackBox.complete` as per-request overrides, so they are
    part of the cache key. ``judge`` is the client that grades answers of a ``metric = "judge"`` task.

    If one example fails for good (an :class:`~engine.errors.EndpointError` after the client's retries), the other
    requests are cancelled and the error is raised: a partial mean would be a wrong score, and the cache keeps the
    answers already paid for, so scoring again later costs only what is missing. A task's own metric function
    that fails raises a :class:`~engine.tasks.MetricError` naming the example.

    ``race`` (the engine passes one from the second batch on) asks the examples in waves and stops once the
    candidate cannot reach the bar; without it every example goes out at once. ``received`` collects every
    answer (the judge's included) as it arrives, so a caller that cancels the scoring can still count what it paid.
    """
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
    n = len(examples)
    waves = [range(n)]
    if race is not None and 0 < race.wave < n:
        waves = [range(i, min(i + race.wave, n)) for i in range(0, n, race.wave)]
    per_example: list[float] = []
    outputs: list[dict[str, Any]] = []
    for k, wave in enumerate(waves):
        await _score_wave(bb, task, instruction, examples, wave, api, overrides, judge, per_example, outputs,
                          received)
        if race is not None and k + 1 < len(waves):
            reachable = (sum(per_example) + (n - len(per_example))) / n
            if reachable < race.bar - 1e-9:
                break
    mean = sum(per_example) / len(per_example) if per_example else 0.0
    return ScoreResult(mean=mean, per_example=per_example, outputs=outputs, n_examples=n)


async def _score_wave(bb: BlackBox, task: Task, instruction: str, examples: list[Example], wave: range, api: str,
                      overrides: dict[str, Any], judge: BlackBox | None, per_example: list[float],
                      outputs: list[dict[str, Any]], received: list[Completion] | None) -> None:
    """Ask and score the examples at the indices in ``wave`` at once, appending to ``per_example`` and
    ``outputs`` (indices stay those of the whole set, so a metric or a stored output sees the same numbering
    whether or not the set went out in waves)."""
    from engine.tasks.metrics import score  # light, but only needed here

    metric = task.metric
    n = len(examples)
    prompts = [_render(task, instruction, examples[i], api) for i in wave]
    completions = await all_answers(_kept(bb.complete(p.user, system=p.system, **overrides), received)
                                    for p in prompts)

    verdicts: dict[int, Completion] = {}
    if metric == "judge" and judge is not None:
        from engine.tasks.user_metrics import JUDGE_MAX_TOKENS, judge_prompt

        rubric = task.judge.rubric if task.judge is not None else ""
        # An empty answer is never right (as under every metric): it is not worth a judge's call.
        graded = [j for j, c in enumerate(completions) if c.text.strip()]
        answers = await all_answers(
            _kept(judge.complete(judge_prompt(rubric, examples[wave[j]], completions[j].text), temperature=0.0,
                                 max_tokens=JUDGE_MAX_TOKENS), received)
            for j in graded)
        verdicts = dict(zip(graded, answers, strict=True))

    for j, (i, c) in enumerate(zip(wave, completions, strict=True)):
        ex = examples[i]
        extra: dict[str, Any] = {}
        if metric == "judge":
            s, extra = _judged(verdicts.get(j))
        elif metric == "python":
            from engine.tasks.user_metrics import example_where, python_metric

            s = python_metric(task).score(c.text, ex.answers, example_where(i, n, ex, c.text))
        else:
            s = float(score(metric, c.text, list(ex.answers), getattr(task, "case_sensitive", False)))
        per_example.append(s)
        outputs.append({"example_index": i, "input": ex.input, "answers": list(ex.answers), "output": c.text,
                        "score": s, "cache_hit": c.cache_hit, "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens, "latency_s": c.latency_s, **extra})


async def _kept(request: Awaitable[Completion], received: list[Completion] | None) -> Completion:
    answer = await request
    if received is not None:
        received.append(answer)
    return answer


def _judged(verdict: Completion | None) -> tuple[float, dict[str, Any]]:
    """A judged answer's score and the judge's reply for the output dict (None: the answer was empty and the judge
    was not asked). A reply without a number scores 0. The history's outputs table has no column for the reply, so
    it lives in the result (and its cost in the candidate's counters), not in the stored outputs."""
    from engine.tasks.user_metrics import judge_verdict

    if verdict is None:
        return 0.0, {"judge": None}
    value = judge_verdict(verdict.text)
    return (value or 0.0), {"judge": {**_answer(verdict), "verdict": value}}
