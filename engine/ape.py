"""APE as the InstructZero paper ran it: an LLM endpoint proposes instructions from demos (Zhou et al., 2022).

APE's "forward" mode shows a capable LLM a few input/output pairs and lets it finish the sentence "The instruction
was to ...", sampled at a temperature (APE used 0.9-1.0) over several demo subsets. Here the proposer is any
OpenAI-compatible endpoint, by default the run's own black box, reached through :class:`engine.blackbox.BlackBox`,
so every proposal is cached, retried, rate-limited and counted like a scoring call.

Why it is shaped this way:

- Different samples must differ, yet a run must be reproducible and a repeated run free: each sample gets its own
  seeded demo order (or subset, as APE's multiple demo subsets) and its own request ``seed``, both drawn from the
  caller's ``seed``. The cache key holds the prompt, the temperature and the seed, so the same run asks nothing
  twice while the next iteration (another seed) gets fresh samples.
- The prompt is the run's prompt style, the generator's (:func:`~engine.prompts.ape_prompt`). In the paper's style
  a chat endpoint gets the forward prompt as the user turn, ending with "Complete the sentence: The instruction
  was to", and a system message asking for the completion only; a completions endpoint gets the raw prompt ending
  with "The instruction was to", as in APE. In the direct style a chat endpoint gets the direct question and its
  system turn, as the generator does. Either way the answer is cleaned
  by the generator's own :func:`~engine.prompts.clean_instruction`, so both APE variants and InstructZero read
  instructions alike.
- The prompt text and the cleaning live in :mod:`engine.prompts`, pure text shared with the generator backends;
  this module adds only what is APE's own: the per-sample demo orders and seeds, and the requests.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.blackbox.client import all_answers
from engine.errors import IZError
from engine.prompts import PLACEHOLDER_INSTRUCTION, ape_prompt, ape_system, clean_instruction

if TYPE_CHECKING:
    from engine.blackbox.client import BlackBox, Completion

__all__ = ["APE_MAX_TOKENS", "ape_demo_sets", "propose_ape", "sample_seed"]

#: Room for one sentence: APE generated at most 50 tokens per instruction.
APE_MAX_TOKENS = 64


def sample_seed(seed: int, i: int) -> random.Random:
    """The random source of sample ``i`` of a proposal seeded with ``seed`` (independent of ``n``)."""
    return random.Random(f"ape:{int(seed)}:{int(i)}")


def ape_demo_sets(
    demos: Sequence[Any], n: int, seed: int, *, demo_subsets: bool = True, subset_size: int | None = None
) -> list[tuple[list[Any], int]]:
    """For each of ``n`` samples: the demos it shows (in order) and its request seed.

    With ``demo_subsets`` each sample sees its own seeded order of the demos, or a seeded subset of ``subset_size``
    of them when that is smaller than the pool (APE's several demo subsets); without it every sample sees the demos
    as given and only the request seed differs. Sample ``i`` depends on ``(seed, i)`` only, so asking for more
    samples keeps the first ones. Request seeds are in ``[0, 2**31)``: llama.cpp reads -1 as "random".
    """
    demos = list(demos)
    out: list[tuple[list[Any], int]] = []
    for i in range(n):
        rng = sample_seed(seed, i)
        request_seed = rng.randrange(2**31)
        if demo_subsets:
            k = len(demos) if subset_size is None else max(1, min(subset_size, len(demos)))
            shown = rng.sample(demos, k)
        else:
            shown = list(demos)
        out.append((shown, request_seed))
    return out


async def propose_ape(
    bb: BlackBox,
    demos: Sequence[Any],
    n: int,
    temperature: float,
    seed: int,
    *,
    demo_subsets: bool = True,
    subset_size: int | None = None,
    max_tokens: int = APE_MAX_TOKENS,
    completions: list[Completion] | None = None,
    style: str = "paper",
) -> list[str]:
    """``n`` instructions proposed by the endpoint behind ``bb`` from ``demos`` (APE, forward mode).

    One request per sample, all at once (the client bounds the concurrency), each with its own demo order and
    ``seed`` at ``temperature``. Each answer is cleaned to one instruction; an unusable answer becomes the
    generator's placeholder. Duplicates are kept (the runner pays for an instruction once). When ``completions``
    is given, every sample's :class:`~engine.blackbox.client.Completion` is appended to it, in order, so the caller
    can count the calls paid and the tokens. ``style`` is the run's prompt style, the generator's, so that APE,
    APE-local and InstructZero ask alike (:mod:`engine.prompts`). If one request fails for good, the others are cancelled and the
    error is raised; the cache keeps what was already paid for.
    """
    if n < 1:
        return []
    if not demos:
        raise IZError("APE needs at least one demo to show the proposer", "set n_demos to 1 or more (--demos)")
    api = getattr(bb.profile, "api", "chat")
    system = ape_system(api, style)
    sets = ape_demo_sets(demos, n, seed, demo_subsets=demo_subsets, subset_size=subset_size)
    answers = await all_answers(
        bb.complete(ape_prompt(shown, api, style), temperature=temperature, max_tokens=max_tokens, seed=rs, system=system)
        for shown, rs in sets
    )
    if completions is not None:
        completions.extend(answers)
    return [clean_instruction(c.text) or PLACEHOLDER_INSTRUCTION for c in answers]
