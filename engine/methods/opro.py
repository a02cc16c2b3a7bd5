"""``opro``: the proposer reads the run's scored instructions and writes better ones (OPRO: Yang et al. 2023,
"Large Language Models as Optimizers").

Why it may beat a surrogate over soft prompts: the proposer sees *what* each instruction says and how it scored, so
it can keep what works and drop what does not, which no model of z can (BENCHMARKS.md: the text is not a local
function of z). The meta-prompt follows the paper's: the best instructions so far with their dev scores as integers
0-100, worst first so that the best sit next to the request; a few demos with the instruction's place marked; a
request for one new instruction, different from and better than all of them, between <INS> tags. Each candidate is
one request at ``ape_temperature`` (the paper samples at 1.0), seeded per run, iteration and sample. The first batch
has no history and is written from the demos alone. Its calls go to the proposer endpoint (``ape_endpoint``, else
the run's own) and are paid like scoring calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from engine.methods.base import Context, Method, Proposal

#: The paper shows the 20 best instructions so far, and 3 exemplars of the task per request.
HISTORY = 20
EXEMPLARS = 3
MAX_TOKENS = 96
_TAGGED = re.compile(r"<INS>(.*?)(?:</INS>|$)", re.DOTALL | re.IGNORECASE)


def meta_prompt(history: Sequence[tuple[str, float]], demos: Sequence[tuple[str, str]]) -> str:
    """The request for one new instruction. ``history``: (instruction, dev score in [0, 1]) pairs, any order;
    ``demos``: (input, answer) pairs."""
    best = sorted(history, key=lambda p: p[1])[-HISTORY:]  # ascending: the best come last, nearest the request
    parts = ["Your job is to write an instruction, marked <INS>, that makes a model give the right output for "
             "each input of a task."]
    if best:
        parts.append("Here are instructions tried so far with their scores (0 to 100, higher is better), from "
                     "worst to best:")
        parts += [f"text:\n{text}\nscore:\n{round(score * 100)}" for text, score in best]
    parts.append("Here are examples of the task:")
    parts += [f"Input:\n<INS>\n{x}\nOutput:\n{y}" for x, y in demos]
    parts.append("Write a new instruction that differs from every instruction above and would score higher than "
                 "all of them. Keep it short, clear and general enough for every example. Start it with <INS> and "
                 "end it with </INS>." if best else
                 "Write an instruction that would make a model give these outputs for these inputs. Keep it "
                 "short, clear and general enough for every example. Start it with <INS> and end it with </INS>.")
    return "\n\n".join(parts)


def parse(text: str) -> str:
    """The instruction inside the first <INS>...</INS> (the whole answer when the tags are missing), cleaned."""
    from engine.prompts import clean_instruction

    found = _TAGGED.search(text or "")
    raw = found.group(1) if found else (text or "")
    raw = raw.replace("**", "").strip()
    if not raw or "INS>" in raw.upper() or len(raw) > 500:
        return ""
    return clean_instruction(raw)


class Opro(Method):
    name = "opro"
    help = "the endpoint reads the scored instructions so far and writes better ones (OPRO)"
    pays_for_proposals = True
    own_settings = ("ape_endpoint", "ape_temperature")

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        from engine.blackbox.client import all_answers
        from engine.prompts import PLACEHOLDER_INSTRUCTION, demo_pairs

        s = ctx.settings
        name, bb = await ctx.proposer()
        seen: dict[str, float] = {}
        for c in ctx.scored():
            if c["dev_score"] is not None:
                seen[c["instruction"]] = max(seen.get(c["instruction"], 0.0), float(c["dev_score"]))
        history = list(seen.items())
        pairs = list(demo_pairs(ctx.demos))
        ctx.status(f"asking {name} for {n} instructions from {len(history)} scored ones (OPRO)")
        requests: list[Any] = []
        for i in range(n):
            rng = random.Random((s.seed * 1000 + iteration) * 1000 + i)
            shown = rng.sample(pairs, min(EXEMPLARS, len(pairs)))
            requests.append(bb.complete(meta_prompt(history, shown), temperature=s.ape_temperature,
                                        max_tokens=MAX_TOKENS, stop=["</INS>"], seed=rng.randrange(2**31)))
        answers = await all_answers(requests)
        ctx.pay(answers)
        return Proposal([parse(a.text) or PLACEHOLDER_INSTRUCTION for a in answers])
