"""``ape``: APE as the paper ran it. The proposer endpoint (``ape_endpoint``, else the run's own) writes
instructions from the demos; its calls are paid like scoring calls, so they count in the run's calls and cost."""

from __future__ import annotations

from typing import Any

from engine.methods.base import Context, Method, Proposal


class Ape(Method):
    name = "ape"
    help = "baseline: the endpoint proposes instructions from the demos (APE, as in the paper)"
    pays_for_proposals = True
    own_settings = ("ape_endpoint", "ape_temperature")

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        from engine.ape import propose_ape

        s = ctx.settings
        name, bb = await ctx.proposer()
        ctx.status(f"asking {name} for {n} instructions (APE)")
        answers: list[Any] = []
        texts = await propose_ape(bb, ctx.demos, n, s.ape_temperature, s.seed * 1000 + iteration,
                                  completions=answers, style=ctx.style)
        ctx.pay(answers)
        return Proposal(texts)
