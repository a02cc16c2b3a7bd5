"""The ask/tell face of the BO core: initial design, one proposal step, and a synthetic-benchmark driver.

The functions here are stateless on purpose. The runner owns evaluation, persistence, dedup of instructions and
resume: it calls ``sobol_points`` for the initial design and ``propose`` after every scored batch, with everything it
has seen so far. Nothing here calls the black box (``optimise_synthetic`` calls a cheap synthetic objective, for tests
and benchmarks only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from engine.bo.acquisition import OptimizerName, maximize_acquisition
from engine.bo.surrogate import MIN_STD, KernelName, fit_surrogate

__all__ = ["SyntheticObjective", "optimise_synthetic", "propose", "sobol_points"]

log = logging.getLogger(__name__)

#: objective(z) -> (score, per-example score vector), like one black-box evaluation of an instruction.
SyntheticObjective = Callable[[Tensor], tuple[float, Tensor]]


def sobol_points(n: int, d: int, seed: int, *, skip: int = 0) -> Tensor:
    """``n`` scrambled Sobol points in [-1, 1]^d (float64), deterministic for ``seed``.

    ``skip`` continues the same sequence past its first ``skip`` points, so a fallback batch drawn after an initial
    design of ``skip`` points with the same seed does not repeat it.
    """
    if n < 0 or d < 1:
        raise ValueError("need n >= 0 and d >= 1")
    engine = torch.quasirandom.SobolEngine(dimension=d, scramble=True, seed=seed)
    if skip:
        engine.fast_forward(skip)
    return engine.draw(n, dtype=torch.float64) * 2.0 - 1.0


def propose(
    Z: Tensor,
    S: Tensor,
    y: Tensor,
    q: int,
    *,
    seed: int,
    kernel: KernelName = "coupled",
    optimizer: OptimizerName = "cmaes",
) -> Tensor:
    """Fit the surrogate to everything seen so far and return ``q`` new distinct points in [-1, 1]^d (float64).

    ``Z`` (n x d) are the latent points, ``S`` (n x m) their per-example score vectors and ``y`` (n) their scores.
    Rows with a non-finite score (a failed evaluation) are ignored. With fewer than 2 usable rows, or a constant y,
    there is nothing to model, so the batch is space-filling Sobol points instead (the Sobol sequence of ``seed``
    past its first n points: with the initial design's seed, a continuation of that design). Deterministic for a given seed and data: torch's global RNG is seeded
    inside a forked RNG state, so the caller's random state is left untouched.

    ``kernel``: "coupled" (the paper's instruction-coupled kernel), "coupled_residual" (plus prior variance away from
    the data) or "matern" (ablation); see ``fit_surrogate``. ``optimizer``: "cmaes" or "botorch"; see
    ``maximize_acquisition``. Points from the model are at least ``MIN_DISTANCE`` apart and from every row of Z.
    """
    Z = torch.as_tensor(Z, dtype=torch.float64)
    S = torch.as_tensor(S, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if Z.ndim != 2:
        raise ValueError(f"Z must be (n, d); got {tuple(Z.shape)}")
    if S.ndim == 1 and Z.shape[0] == S.shape[0]:
        S = S.unsqueeze(-1)
    if not (Z.shape[0] == S.shape[0] == y.shape[0]):
        raise ValueError(f"Z, S and y disagree on n: {Z.shape[0]}, {S.shape[0]}, {y.shape[0]}")
    if q < 1:
        raise ValueError("q must be >= 1")
    n_seen, d = Z.shape
    ok = torch.isfinite(y) & torch.isfinite(Z).all(dim=-1) & torch.isfinite(S).all(dim=-1)
    if not bool(ok.all()):
        log.warning("ignoring %d rows with non-finite values", int((~ok).sum()))
    Z, S, y = Z[ok], S[ok], y[ok]

    if y.shape[0] < 2 or float(y.std()) <= MIN_STD:
        log.info("propose: %d usable points and no spread in y; using Sobol points", y.shape[0])
        return sobol_points(q, d, seed, skip=n_seen)

    with torch.random.fork_rng(devices=[]):
        # botorch draws random restarts (fit retries, optimize_acqf raw samples) from torch's global generator.
        torch.manual_seed(seed)
        model = fit_surrogate(Z, S, y, kernel=kernel)
        return maximize_acquisition(model, Z, y, q, optimizer=optimizer, seed=seed)


def optimise_synthetic(
    objective: SyntheticObjective,
    d: int,
    n_init: int,
    n_iter: int,
    q: int,
    seed: int,
    method: Literal["bo", "random"] = "bo",
    *,
    kernel: KernelName = "coupled",
    optimizer: OptimizerName = "cmaes",
) -> list[float]:
    """Run BO (or uniform random search with the same budget) on a cheap objective; return best-so-far per evaluation.

    The returned list has ``n_init + n_iter * q`` entries: entry i is the best score among the first i + 1 points.
    BO evaluates a Sobol initial design, then ``n_iter`` batches from ``propose`` (seeded ``seed + iteration``).
    """
    if method not in ("bo", "random"):
        raise ValueError(f"unknown method {method!r}; expected 'bo' or 'random'")
    zs: list[Tensor] = []
    ss: list[Tensor] = []
    ys: list[float] = []

    def evaluate(batch: Tensor) -> None:
        for z in batch:
            score, vector = objective(z)
            zs.append(z)
            ss.append(torch.as_tensor(vector, dtype=torch.float64).reshape(-1))
            ys.append(float(score))

    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        evaluate(torch.rand(n_init + n_iter * q, d, generator=generator, dtype=torch.float64) * 2.0 - 1.0)
    else:
        evaluate(sobol_points(n_init, d, seed))
        for it in range(n_iter):
            batch = propose(
                torch.stack(zs),
                torch.stack(ss),
                torch.tensor(ys, dtype=torch.float64),
                q,
                seed=seed + 1 + it,
                kernel=kernel,
                optimizer=optimizer,
            )
            evaluate(batch)

    best: list[float] = []
    running = -math.inf
    for value in ys:
        running = max(running, value)
        best.append(running)
    return best
