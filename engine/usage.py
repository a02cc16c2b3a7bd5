"""What black-box answers cost: paid calls, calls saved, tokens — counted here and nowhere else.

Why one place: a run's counters are written while it runs (scoring, the APE proposer, test scoring), stored per
candidate, rebuilt from those rows on resume and shown by every front end. When each of those did its own sum, the
live screen's header and footer disagreed. Every count of a run goes through :class:`Usage`.

Rules: an answer served by the response cache is saved, not paid; its tokens are those of the original request (so a
run's tokens say what its answers cost once, cached or not); an evaluation answered by the run's own earlier score of
the same instruction (dedup) saves one call per example and costs nothing.

Money is paid only for answers that went over the network: ``paid_prompt_tokens`` and ``paid_completion_tokens``
count the tokens of paid calls alone (a cached or deduplicated answer adds 0), and :meth:`Usage.cost` prices them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FIELDS = ("calls", "calls_saved", "prompt_tokens", "completion_tokens", "paid_prompt_tokens",
          "paid_completion_tokens")


def estimate_tokens(text: str) -> int:
    """About four characters a token: used when the endpoint reports no ``usage``, and for cost estimates."""
    return 0 if not text else max(1, round(len(text) / 4))


def _get(answer: Any, name: str) -> Any:
    """Answers come as stored output dicts or as :class:`~engine.blackbox.client.Completion` objects."""
    return answer.get(name) if isinstance(answer, Mapping) else getattr(answer, name, None)


@dataclass
class Usage:
    """Counters of black-box use; add them up with ``+``."""

    calls: int = 0
    calls_saved: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    paid_prompt_tokens: int = 0
    paid_completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def paid_tokens(self) -> int:
        """The tokens of the calls that went over the network (what an endpoint bills)."""
        return self.paid_prompt_tokens + self.paid_completion_tokens

    def cost(self, prices: tuple[float, float] | None) -> float | None:
        """What the paid calls cost at ``prices`` (USD per million input and output tokens, as
        :attr:`engine.config.EndpointProfile.prices` gives them); None when the prices are unknown."""
        if prices is None:
            return None
        price_in, price_out = prices
        return (self.paid_prompt_tokens * price_in + self.paid_completion_tokens * price_out) / 1_000_000

    @classmethod
    def of_answers(cls, answers: Iterable[Any]) -> Usage:
        """The cost of a batch of answers (output dicts or completions)."""
        u = cls()
        for a in answers:
            prompt, completion = _get(a, "prompt_tokens") or 0, _get(a, "completion_tokens") or 0
            if _get(a, "cache_hit"):
                u.calls_saved += 1
            else:
                u.calls += 1
                u.paid_prompt_tokens += prompt
                u.paid_completion_tokens += completion
            u.prompt_tokens += prompt
            u.completion_tokens += completion
        return u

    @classmethod
    def reused(cls, n_examples: int) -> Usage:
        """An evaluation answered by an earlier score of the same instruction: every example's call saved."""
        return cls(calls_saved=n_examples)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Usage:
        """The counters stored in a run or candidate row (missing or NULL columns count 0)."""
        return cls(**{f: int(row.get(f) or 0) for f in FIELDS})

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f) + getattr(other, f) for f in FIELDS))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f) - getattr(other, f) for f in FIELDS))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


__all__ = ["FIELDS", "Usage", "estimate_tokens"]
