"""What a run will cost before it starts (calls, tokens, money), and what a recorded run cost.

Pure and light (no HTTP client, no model): the TUI's home screen and ``iz run --dry-run`` estimate from here
without starting the engine. Prices come from the endpoint profile (:attr:`engine.config.EndpointProfile.prices`:
USD per million input and output tokens; a local endpoint is free); what a run spent comes from its
:class:`~engine.usage.Usage`, where only calls that went over the network are paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.config import PRICES_UNKNOWN, EndpointProfile, RunSettings
from engine.methods import get as get_method
from engine.tasks import Example, Task, make_splits
from engine.usage import Usage, estimate_tokens

#: A typical instruction (about 15 words) standing in for the ones a run will write.
TYPICAL_INSTRUCTION = "Read the input carefully and write the answer the examples show, in the same short form."
#: The APE proposer's answer is one instruction, cut at this many tokens (engine.ape.APE_MAX_TOKENS).
APE_MAX_TOKENS = 64
#: A judge replies with a number ("7", "Score: 7").
JUDGE_REPLY_TOKENS = 4


@dataclass(frozen=True)
class Estimate:
    """Black-box calls, tokens and money a run will spend at most (about), before cache hits.

    ``money`` is None when the endpoint's prices are unknown; ``local`` says the endpoint is on this machine and
    not priced (it costs nothing). ``capped_by`` names the budget (``calls``, ``tokens`` or ``cost``) that cuts the
    run short of its evaluations, if one does."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    money: float | None
    local: bool
    capped_by: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(int(data.get("calls") or 0), int(data.get("prompt_tokens") or 0),
                   int(data.get("completion_tokens") or 0), data.get("money"), bool(data.get("local")),
                   data.get("capped_by"))

    def money_text(self) -> str:
        """The money in words: ``$0.0123``, ``0 (local endpoint)`` or the unknown-prices line."""
        return money_text(self.money, self.local)


def money_text(money: float | None, local: bool = False) -> str:
    """An amount of USD for people; ``local`` with nothing spent reads "0 (local endpoint)"."""
    if money is None:
        return PRICES_UNKNOWN
    if local and money == 0:
        return "0 (local endpoint)"
    return f"${money:.4f}" if money < 1 else f"${money:,.2f}"


def is_free(profile: EndpointProfile) -> bool:
    """A local endpoint without prices of its own: it costs nothing."""
    return profile.local and profile.price_input is None


def _prompt_tokens(task: Task, example: Example, api: str, instruction: str = TYPICAL_INSTRUCTION) -> int:
    p = task.render(instruction, example, api)
    return estimate_tokens(p.user) + estimate_tokens(p.system or "")


def _answer_tokens(example: Example, max_tokens: int) -> int:
    return min(max_tokens, max(1, estimate_tokens(example.output)))


def estimate_run(task: Task, settings: RunSettings, profile: EndpointProfile, *,
                 n_instructions: int | None = None) -> Estimate:
    """What a run of ``task`` with ``settings`` on ``profile`` will spend, before it starts.

    Calls: every dev example of every evaluation (``settings.evaluations``; for the manual method
    ``n_instructions``), then the test examples once for the best instruction; the APE proposer adds one call per
    evaluation (its prompt shows the demos); a judged task adds one judge call per answer. Prompt tokens are those
    of the task's own prompts for the dev and test examples the run will draw (same seed), with a typical
    instruction of about 15 words; completion tokens are the length of each example's answer, capped by the task's
    (else the profile's) ``max_tokens``. Tokens are counted as :func:`~engine.usage.estimate_tokens` does (about
    four characters a token), without a chat template's few tokens per message. A ``budget_calls``,
    ``budget_tokens`` or ``budget_cost`` that stops the run earlier cuts the estimate to it (``capped_by``).

    It is an upper bound, roughly: it ignores cache hits (a repeated run or a resumed one pays for nothing it has
    already asked), deduplication (a repeated instruction costs no calls), a model answering longer than the
    answers, and that a judge or an APE proposer on another endpoint has its own prices (all are priced here at
    ``profile``'s). Raises :class:`~engine.errors.TaskError` when the task is too small for the splits, as a run
    would.

    Length: every part of a run's spending (dev, test, proposals, judge calls, the caps) added up in one
    place, so the estimate and its parts cannot drift apart.
    """
    splits = make_splits(task, n_demos=settings.n_demos, n_dev=settings.n_dev, n_test=settings.n_test,
                         seed=settings.seed)
    api = task.api or profile.api
    max_tokens = task.max_tokens or profile.max_tokens
    method = get_method(settings.method)
    evaluations = method.budget(settings, n_instructions or 0)
    test = splits.test if evaluations else []

    def cost_of(examples: list[Example]) -> tuple[int, int, int]:
        calls = len(examples)
        prompt = sum(_prompt_tokens(task, ex, api) for ex in examples)
        completion = sum(_answer_tokens(ex, max_tokens) for ex in examples)
        if task.judge is not None:
            from engine.tasks.user_metrics import judge_prompt

            calls *= 2
            prompt += sum(estimate_tokens(judge_prompt(task.judge.rubric, ex, ex.output)) for ex in examples)
            completion += JUDGE_REPLY_TOKENS * len(examples)
        return calls, prompt, completion

    dev_calls, dev_prompt, dev_completion = cost_of(splits.dev)
    test_calls, test_prompt, test_completion = cost_of(test)
    calls = evaluations * dev_calls + test_calls
    prompt = evaluations * dev_prompt + test_prompt
    completion = evaluations * dev_completion + test_completion
    if method.pays_for_proposals and evaluations and splits.demos:
        from engine.prompts import ape_prompt, ape_system

        proposer_api = profile.api
        style = "direct" if settings.prompt_style == "auto" else settings.prompt_style  # auto: the longer system
        asked = estimate_tokens(ape_prompt(splits.demos, proposer_api, style))
        asked += estimate_tokens(ape_system(proposer_api, style) or "")
        proposals = method.proposal_calls(settings, evaluations)  # each priced as an APE request (OPRO's grow)
        calls += proposals
        prompt += proposals * asked
        completion += proposals * min(APE_MAX_TOKENS, estimate_tokens(TYPICAL_INSTRUCTION))

    prices = profile.prices

    def money(p: float, c: float) -> float | None:
        return None if prices is None else (p * prices[0] + c * prices[1]) / 1_000_000

    # The budget that stops the run first cuts everything in proportion.
    fraction, capped_by = 1.0, None
    caps = (("calls", settings.budget_calls, calls), ("tokens", settings.budget_tokens, prompt + completion),
            ("cost", settings.budget_cost, money(prompt, completion)))
    for name, cap, value in caps:
        if cap is not None and value and cap / value < fraction:
            fraction, capped_by = cap / value, name
    if capped_by is not None:
        calls, prompt, completion = (round(v * fraction) for v in (calls, prompt, completion))
    return Estimate(calls, prompt, completion, money(prompt, completion), is_free(profile), capped_by)


def run_prices(row: Mapping[str, Any]) -> tuple[tuple[float, float] | None, bool]:
    """The prices recorded with a run (its endpoint profile when it started) and whether it was free (local)."""
    ep = dict(row.get("endpoint") or {})
    ep.pop("name", None)
    try:
        profile = EndpointProfile.model_validate(ep)
    except Exception:  # a row written by another version: its cost is unknown, not an error
        return None, False
    return profile.prices, is_free(profile)


def run_cost(row: Mapping[str, Any]) -> float | None:
    """What a recorded run (a history row) paid, at the prices recorded with it; 0.0 for a local endpoint, None
    when the prices are unknown."""
    prices, _ = run_prices(row)
    return Usage.of_row(row).cost(prices)


def run_cost_text(row: Mapping[str, Any]) -> str:
    """A recorded run's cost in words (``$0.0123``, ``0 (local endpoint)``, or unknown and how to fix it)."""
    prices, free = run_prices(row)
    return money_text(Usage.of_row(row).cost(prices), free)


__all__ = ["Estimate", "TYPICAL_INSTRUCTION", "estimate_run", "is_free", "money_text", "run_cost", "run_cost_text",
           "run_prices"]
