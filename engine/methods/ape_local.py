"""``ape_local``: APE with the local generator as proposer (same model and prompt as InstructZero, no soft prompt),
so that the soft prompt's contribution can be told apart from the generator's."""

from __future__ import annotations

import asyncio

from engine.methods.base import Context, Method, Proposal


class ApeLocal(Method):
    name = "ape_local"
    help = "baseline: instructions sampled from the local model, no soft prompt (APE, local)"
    needs_generator = True
    own_settings = ("ape_temperature",)

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        s = ctx.settings
        gen = await ctx.generator()
        ctx.status(f"sampling {n} instructions from the local model (APE, local)")
        texts = await asyncio.to_thread(gen.sample, ctx.demos, n, s.ape_temperature, s.seed * 1000 + iteration,
                                        ctx.style)
        return Proposal(texts)
