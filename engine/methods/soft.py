"""What the soft-prompt methods share (instructzero, random): points z in [-1, 1]^d, projected into the generator's
embedding space as soft tokens, decoded into instructions; a z whose greedy text the run already has is decoded
again by seeded sampling (engine/resample.py), so a batch is not wasted on repeats. Subclasses choose the points."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.methods.base import Context, Method, Proposal


class SoftPromptMethod(Method):
    needs_generator = True
    soft_prompts = True
    own_settings = ("intrinsic_dim", "n_soft_tokens", "projection", "soft_scale", "resample_repeats",
                    "resample_temperature", "resample_echoes")

    def next_points(self, ctx: Context, iteration: int, n: int) -> Any:
        """``n`` x ``intrinsic_dim`` float64 tensor of soft prompts in [-1, 1]."""
        raise NotImplementedError

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        s = ctx.settings
        gen = await ctx.generator()
        Z = await asyncio.to_thread(self.next_points, ctx, iteration, n)
        ctx.status(f"writing {n} instructions from soft prompts")
        extra = {} if s.soft_scale is None else {"scale": s.soft_scale}
        proj = await asyncio.to_thread(gen.projection, s.intrinsic_dim, s.n_soft_tokens, s.seed, s.projection,
                                       **extra)
        greedy = await asyncio.to_thread(gen.instructions, Z, ctx.demos, proj, s.n_soft_tokens, style=ctx.style)
        texts = greedy
        if s.resample_repeats:
            texts = await asyncio.to_thread(self._resample_repeats, ctx, gen, Z, proj, greedy, iteration)
        return Proposal(texts, [[float(v) for v in row] for row in Z.tolist()],
                        ["greedy" if a == b else "sampled" for a, b in zip(greedy, texts, strict=True)])

    @staticmethod
    def _resample_repeats(ctx: Context, gen: Any, Z: Any, proj: Any, texts: list[str], iteration: int) -> list[str]:
        """Decode again, by sampling, the soft prompts whose greedy text the run already has: at
        ``resample_temperature``, up to ``resample_repeats`` times, seeded per run, iteration and try so that a run
        is reproducible. The z recorded is the one decoded, so the surrogate still learns what that point of the
        latent space writes."""
        import logging

        from engine.prompts import is_echo
        from engine.resample import replace_repeats

        s = ctx.settings
        rows = Z.tolist()

        def retry(positions: list[int], attempt: int) -> list[str]:
            seed = (s.seed * 1000 + iteration) * 16 + attempt
            return gen.instructions([rows[i] for i in positions], ctx.demos, proj, s.n_soft_tokens,
                                    sample=(s.resample_temperature, seed), style=ctx.style)

        reject = is_echo if s.resample_echoes else None
        out, n_repeats = replace_repeats(texts, ctx.taken(), retry, s.resample_repeats, reject=reject)
        if n_repeats:
            found = sum(a != b for a, b in zip(out, texts, strict=True))
            what = "a known instruction or an echo of the prompt" if reject else "a known instruction"
            logging.getLogger(__name__).info("run %s: %d of %d soft prompts decoded to %s; sampling found %d new",
                                             ctx.run_id, n_repeats, len(texts), what, found)
            ctx.status(f"{n_repeats} of {len(texts)} soft prompts wrote {what}; sampling them again found {found} new")
        return out
