"""``random``: soft prompts drawn uniformly at random, decoded by the same generator (the paper's "Uniform"
baseline). What InstructZero's Bayesian optimisation has to beat at the same budget."""

from __future__ import annotations

from typing import Any

from engine.methods.base import Context
from engine.methods.soft import SoftPromptMethod


class RandomSoftPrompts(SoftPromptMethod):
    name = "random"
    help = "baseline: random soft prompts through the same local model (the paper's Uniform)"

    def next_points(self, ctx: Context, iteration: int, n: int) -> Any:
        import torch

        s = ctx.settings
        g = torch.Generator().manual_seed(s.seed * 1000 + iteration)
        return torch.rand(n, s.intrinsic_dim, generator=g, dtype=torch.float64) * 2 - 1
