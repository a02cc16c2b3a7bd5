"""``instinct``: a pool of soft prompts decoded once, and a neural bandit over what each instruction says picks the
next ones to score (after INSTINCT: Lin et al., ICML 2024, "Use Your INSTINCT").

Why: InstructZero's GP models the score as a function of the soft prompt z, but the text is not a local function
of z (BENCHMARKS.md: a 5% step in z changes as many decodes as a 50% step), so the GP has nothing to model.
INSTINCT decodes a pool first and models the score over a representation of each candidate instead; here that is
what the *instruction* says (engine/embeddings.py: the generator's last layer, mean-pooled), so two soft prompts that
write the same or similar instructions share what was learnt about them. (INSTINCT's code represents a candidate by
the hidden state of its soft prompt and demos; a text representation follows this project's finding and makes the
pool's duplicates one candidate.)

How a run goes:
1. The pool: ``pool_size`` Sobol points (the run's seed; empty = 3 x the budget, at most 200) decoded greedily with
   the run's projection and prompt, the distinct texts kept (each with the first z that wrote it) and embedded. The
   1.5B generator writes the same few texts for most soft prompts (its first quality part gave 3-4 distinct texts
   from 30 points, so runs ended after 3.5 evaluations), so the repeats are decoded again by seeded sampling, up to
   ``resample_repeats`` rounds, until the pool holds twice the budget. It is cached per task, demos, generator, seed
   and decoding settings, so a resumed or repeated run does not decode it again.
2. The first batch: ``n_init`` distinct pool texts at random (seeded), as INSTINCT starts.
3. Each later batch: NeuralUCB (engine/bo/neural_ucb.py) fitted on the scored candidates, picking the texts of the
   pool not yet proposed with the highest upper confidence bound.
The runner scores the candidates as for every method: racing, the response cache, free repeats and resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from engine.methods.base import Context, Proposal
from engine.methods.soft import SoftPromptMethod

#: The pool when ``pool_size`` is empty: 3 x the budget (a quick run stays quick), at most this many.
MAX_AUTO_POOL = 200
#: Soft prompts decoded per call while the pool is made (one status line each).
CHUNK = 10


@dataclass
class Pool:
    """Distinct instructions of the decoded pool, the z that first wrote each, how it was decoded ("greedy" or
    "sampled"), and their representations."""

    texts: list[str]
    zs: list[list[float]]
    vectors: list[list[float]]
    decoded: int
    decodings: list[str] | None = None


def pool_size(settings: Any) -> int:
    return settings.pool_size or min(MAX_AUTO_POOL, max(3 * settings.evaluations, settings.n_init + 1))


class Instinct(SoftPromptMethod):
    name = "instinct"
    help = "a pool of soft prompts decoded once; a neural bandit over what the instructions say picks (INSTINCT)"
    own_settings = ("intrinsic_dim", "n_soft_tokens", "projection", "soft_scale", "pool_size", "resample_repeats",
                    "resample_temperature")

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        pool = await self._pool(ctx)
        taken = set(ctx.taken())
        free = [i for i, t in enumerate(pool.texts) if t not in taken]
        if not free:
            ctx.status(f"the pool's {len(pool.texts)} distinct instructions are all proposed")
            return Proposal([])
        s = ctx.settings
        if iteration == 0:
            picked = random.Random(s.seed).sample(free, min(n, len(free)))
        else:
            picked = await asyncio.to_thread(self._select, ctx, pool, free, n)
        how = pool.decodings or ["greedy"] * len(pool.texts)
        return Proposal([pool.texts[i] for i in picked], [pool.zs[i] for i in picked], [how[i] for i in picked])

    @staticmethod
    def _select(ctx: Context, pool: Pool, free: list[int], n: int) -> list[int]:
        import torch

        from engine.bo.neural_ucb import select

        where = {t: i for i, t in enumerate(pool.texts)}
        scored = [(where[c["instruction"]], float(c["dev_score"])) for c in ctx.scored()
                  if c["instruction"] in where and c["dev_score"] is not None and c["duplicate_of"] is None]
        if not scored:  # nothing of the pool scored (a resumed run whose pool changed): start at random
            return random.Random(ctx.settings.seed + len(free)).sample(free, min(n, len(free)))
        V = torch.tensor(pool.vectors, dtype=torch.float64)
        X_train = V[[i for i, _ in scored]]
        y = torch.tensor([v for _, v in scored], dtype=torch.float64)
        chosen = select(X_train, y, V[free], n, seed=ctx.settings.seed * 1000 + len(scored))
        return [free[j] for j in chosen]

    async def _pool(self, ctx: Context) -> Pool:
        from engine import paths

        gen = await ctx.generator()
        s = ctx.settings
        size = pool_size(s)
        key = {"v": 2, "task": ctx.task.name, "demos": [[d.input, list(d.answers)] for d in ctx.demos],
               "resample": [s.resample_repeats, s.resample_temperature, s.evaluations],
               "generator": str(getattr(gen, "model_name", type(gen).__name__)), "seed": s.seed, "size": size,
               "d": s.intrinsic_dim, "tokens": s.n_soft_tokens, "projection": s.projection, "scale": s.soft_scale,
               "style": ctx.style, "knobs": repr(getattr(gen, "knobs", None))}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = paths.cache_dir() / "instinct" / f"pool-{digest}.json"
        if path.is_file():
            try:
                return Pool(**json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                pass  # a damaged cache entry: decode again
        pool = await asyncio.to_thread(self._decode_pool, ctx, gen, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{random.randrange(2**32):08x}.tmp")
        tmp.write_text(json.dumps(pool.__dict__), encoding="utf-8")
        tmp.replace(path)
        return pool

    @staticmethod
    def _decode_pool(ctx: Context, gen: Any, size: int) -> Pool:
        from engine import bo

        s = ctx.settings
        Z = bo.sobol_points(size, s.intrinsic_dim, s.seed)
        extra = {} if s.soft_scale is None else {"scale": s.soft_scale}
        proj = gen.projection(s.intrinsic_dim, s.n_soft_tokens, s.seed, s.projection, **extra)
        texts: list[str] = []
        zs: list[list[float]] = []
        how: list[str] = []
        repeats: list[int] = []  # pool points whose greedy text an earlier point wrote

        def keep(rows: list[list[float]], decoded: list[str], kind: str) -> list[bool]:
            new = []
            for z, text in zip(rows, decoded, strict=True):
                fresh = bool(text) and text not in texts
                if fresh:
                    texts.append(text)
                    zs.append([float(v) for v in z])
                    how.append(kind)
                new.append(fresh)
            return new

        for start in range(0, size, CHUNK):
            ctx.status(f"decoding the pool: {start} of {size} soft prompts, {len(texts)} distinct instructions")
            chunk = Z[start:start + CHUNK]
            fresh = keep(chunk.tolist(), gen.instructions(chunk, ctx.demos, proj, s.n_soft_tokens, style=ctx.style),
                         "greedy")
            repeats += [start + i for i, f in enumerate(fresh) if not f]
        # Greedy decoding writes the same few texts for most soft prompts (bench/NOTES.md), so a pool of 3 x the
        # budget can hold fewer distinct instructions than the budget. Decode the repeats again by seeded sampling,
        # as the soft-prompt methods do (engine/resample.py), until the pool holds twice the budget or the tries
        # (resample_repeats rounds) are spent.
        want = min(size, 2 * s.evaluations)
        rows = Z.tolist()
        for attempt in range(s.resample_repeats):
            if len(texts) >= want or not repeats:
                break
            still: list[int] = []
            for start in range(0, len(repeats), CHUNK):
                ctx.status(f"sampling the pool's repeats again (try {attempt + 1}): {len(texts)} distinct instructions")
                idx = repeats[start:start + CHUNK]
                seed = (s.seed * 1000 + attempt) * 1000 + start
                decoded = gen.instructions([rows[i] for i in idx], ctx.demos, proj, s.n_soft_tokens,
                                           sample=(s.resample_temperature, seed), style=ctx.style)
                fresh = keep([rows[i] for i in idx], decoded, "sampled")
                still += [i for i, f in zip(idx, fresh, strict=True) if not f]
                if len(texts) >= want:
                    break
            repeats = still
        ctx.status(f"representing the pool's {len(texts)} distinct instructions")
        vectors = gen.embed(texts).tolist() if texts else []
        return Pool(texts, zs, vectors, size, how)
