"""Expected improvement and its maximisation over the latent box [-1, 1]^d.

We use botorch's *log* expected improvement: plain EI underflows to exactly zero away from the incumbent, which leaves
both CMA-ES and gradient optimisers on a flat landscape; log-EI keeps a usable signal there and has the same argmax.

Two optimisers, selectable because they trade off differently:

* ``"cmaes"`` (the paper's): one CMA-ES run started from each of the best observed points; each run's best point is a
  candidate. Derivative-free, robust to the coupled kernel's rough acquisition surface, and the different starts give
  a naturally diverse batch (the seed picked the starts with an argsort over a (n, 1) tensor, i.e. along the wrong
  axis, so every run started from the same point; we sort the flat y).
* ``"botorch"``: ``optimize_acqf`` with L-BFGS-B from Sobol/raw-sample restarts; a q > 1 batch is built greedily with
  ``qLogExpectedImprovement`` (sequential=True), which accounts for the pending points of the batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from botorch.acquisition import LogExpectedImprovement, qLogExpectedImprovement
from botorch.exceptions.warnings import BotorchWarning
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from engine.bo.kernel import flat_batches

__all__ = [
    "MIN_DISTANCE",
    "OptimizerName",
    "cmaes_starts",
    "dedupe_candidates",
    "log_expected_improvement",
    "maximize_acquisition",
]

log = logging.getLogger(__name__)

OptimizerName = Literal["cmaes", "botorch"]

#: Batch members (and observed points) must differ by at least this much in some coordinate (5% of the box width).
#: A cheap stand-in for local penalisation: without it the q CMA-ES runs, all climbing the same EI peak, return q
#: near-copies, which decode to one instruction. On the synthetic bumps benchmark 0.1 kept d=10 with the paper's
#: budget as good as 0.02 (best found 0.987 vs 0.992, 3 seeds) and helped d=4 with 8 + 3 x 4 points (0.902 vs 0.886,
#: 10 seeds); 0.25 over-spread the d=10 batches (0.934).
MIN_DISTANCE = 0.1


def log_expected_improvement(model: Model, best_f: float | Tensor) -> LogExpectedImprovement:
    """Analytic log-EI for ``model`` against the incumbent ``best_f`` (in the model's own, standardised, units)."""
    return LogExpectedImprovement(model=model, best_f=best_f)


@contextmanager
def _numerical_warnings_to_log(what: str) -> Iterator[None]:
    """Turn the numerical warnings of an acquisition optimisation into one debug log line.

    The paper's coupled kernel has a nearly singular posterior covariance by design (rank <= n), so gpytorch and
    botorch warn about jitter, negative variances and restarted L-BFGS runs on almost every call. They are expected,
    handled (clamped, jittered, retried) and would only flood the engine's stderr.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)  # gpytorch's NumericalWarning and botorch's retries
        warnings.simplefilter("always", BotorchWarning)
        yield
    if caught:
        messages = sorted({str(w.message).splitlines()[0][:120] for w in caught})
        log.debug("%s: %d numerical warnings (%s)", what, len(caught), "; ".join(messages[:3]))


def _incumbent(model: Model) -> Tensor:
    # The model is trained on standardised y; the incumbent must be in the same units.
    return model.train_targets.max()


def maximize_acquisition(
    model: Model,
    Z: Tensor,
    y: Tensor,
    q: int,
    *,
    optimizer: OptimizerName = "cmaes",
    seed: int = 0,
    min_distance: float = MIN_DISTANCE,
    cma_sigma0: float = 0.5,
    cma_popsize: int | None = None,
    cma_maxiter: int = 30,
    num_restarts: int = 8,
    raw_samples: int = 256,
) -> Tensor:
    """Return ``q`` distinct points in [-1, 1]^d (float64) that (approximately) maximise EI under ``model``.

    ``Z`` (n x d) and ``y`` (n) are the observed data: CMA-ES starts from the best of them. Candidates are taken best
    first, skipping any within ``min_distance`` (max-abs) of an observed point or of a candidate already taken: many
    nearby soft prompts decode to the same instruction, so near-copies would waste batch slots. Slots left over are
    filled from the rest of the points CMA-ES evaluated (best EI first), then with scrambled Sobol points, so the
    result always has exactly ``q`` rows. Deterministic for a ``seed``.
    """
    if q < 1:
        raise ValueError("q must be >= 1")
    Z = torch.as_tensor(Z, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    d = Z.shape[-1]
    if optimizer == "cmaes":
        with _numerical_warnings_to_log("CMA-ES on log-EI"):
            candidates, values, pool, pool_values = _optimize_cmaes(
                model, Z, y, q, seed=seed, sigma0=cma_sigma0, popsize=cma_popsize, maxiter=cma_maxiter
            )
    elif optimizer == "botorch":
        with _numerical_warnings_to_log("optimize_acqf on log-EI"):
            candidates, values = _optimize_botorch(
                model, q, d, seed=seed, num_restarts=num_restarts, raw_samples=raw_samples
            )
        pool, pool_values = candidates.new_zeros((0, d)), values.new_zeros(0)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'cmaes' or 'botorch'")
    ranked = torch.cat(
        [
            candidates[torch.argsort(values, descending=True, stable=True)],
            pool[torch.argsort(pool_values, descending=True, stable=True)],
        ]
    ).clamp(-1.0, 1.0)
    kept = dedupe_candidates(ranked, Z, q, tol=min_distance)
    if kept.shape[0] < q:
        filler = _sobol_fill(q - kept.shape[0], d, seed, avoid=torch.cat([Z, kept]), tol=min_distance)
        kept = torch.cat([kept, filler])
    return kept


def dedupe_candidates(candidates: Tensor, observed: Tensor, q: int, *, tol: float = MIN_DISTANCE) -> Tensor:
    """The first (at most) ``q`` rows of ``candidates`` farther than ``tol`` (max-abs) from ``observed`` and each other.

    The distances to ``observed`` are taken a block of rows at a time (CMA-ES hands over thousands of candidates,
    most of them near an observed point, and one row at a time cost more than a posterior call); only the rows that
    pass are then checked, in order, against the ones already kept. The same comparisons as row by row.
    """
    kept: list[Tensor] = []
    observed = observed.to(candidates)
    block = max(1, 2**18 // max(1, observed.shape[0] * candidates.shape[-1]))  # ~2 MB of differences at a time
    for start in range(0, candidates.shape[0], block):
        rows = candidates[start : start + block]
        if observed.shape[0]:
            near = ((rows.unsqueeze(-2) - observed).abs().amax(dim=-1) < tol).any(dim=-1)
            rows = rows[~near]
        for x in rows:
            if kept and bool(((torch.stack(kept) - x).abs().amax(dim=-1) < tol).any()):
                continue
            kept.append(x)
            if len(kept) == q:
                return torch.stack(kept)
    if not kept:
        return candidates.new_zeros((0, candidates.shape[-1]))
    return torch.stack(kept)


def _sobol_fill(k: int, d: int, seed: int, *, avoid: Tensor, tol: float) -> Tensor:
    """``k`` scrambled-Sobol points in [-1, 1]^d away from ``avoid`` (a space-filling filler for a short batch)."""
    engine = torch.quasirandom.SobolEngine(dimension=d, scramble=True, seed=seed + 7919)
    points = engine.draw(4 * k + avoid.shape[0] + 16, dtype=torch.float64) * 2.0 - 1.0
    kept = dedupe_candidates(points, avoid, k, tol=tol)
    if kept.shape[0] < k:  # only for an absurd tol: give up on spacing rather than on the batch size
        kept = torch.cat([kept, points[: k - kept.shape[0]]])
    return kept


def cmaes_starts(Z: Tensor, y: Tensor, k: int) -> Tensor:
    """The ``k`` best observed points, best first (cycled when fewer than ``k`` were observed): one CMA-ES start each.

    y is flattened before sorting: the seed sorted a (n, 1) tensor along its last axis, which is a no-op, so every
    run started from the first observed point instead of the best ones.
    """
    y = torch.as_tensor(y).reshape(-1)
    if Z.shape[0] != y.shape[0] or Z.shape[0] == 0:
        raise ValueError("need as many (and at least one) observed points as scores")
    order = torch.argsort(y, descending=True, stable=True)
    return Z[order[torch.arange(k) % order.shape[0]]]


def _optimize_cmaes(
    model: Model,
    Z: Tensor,
    y: Tensor,
    q: int,
    *,
    seed: int,
    sigma0: float,
    popsize: int | None,
    maxiter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One CMA-ES run per start (the q best observed points, cycled if there are fewer).

    Returns each run's best point and log-EI, then every point any run evaluated with its log-EI (the pool that
    tops up a batch when several runs converge to the same optimum).

    Length: one CMA-ES ask/tell loop with its seeding, batching of a generation into one posterior call and
    the pick of q distinct points; split, the state the loop carries would be spread over several functions.
    """
    with warnings.catch_warnings():
        # cma imports matplotlib lazily and warns when it is absent; we never plot.
        warnings.simplefilter("ignore")
        import cma

    acq = log_expected_improvement(model, _incumbent(model))
    starts = list(cmaes_starts(Z, y, q))
    box = _Box(Z.shape[-1])
    # The box is pycma's own bound handling (BoundTransform: its lin-quad transformation, the std capped at a third
    # of the range), applied here to every run's population at once instead of by pycma to one solution at a
    # time, which was a third of the acquisition's time. Each run gets the same genotypes, phenotypes and updates
    # as with ``bounds`` set (tests/unit/test_acquisition_box.py compares them).
    options: dict[str, object] = {"verbose": -9, "maxiter": maxiter, "tolfun": 1e-9, "maxstd": box.maxstd}
    if popsize is not None:
        options["popsize"] = popsize

    # cma seeds numpy's global generator; keep the caller's numpy state as it was.
    np_state = np.random.get_state()
    seen: list[Tensor] = []
    seen_values: list[Tensor] = []
    try:
        # cma treats seed 0 as "seed from the clock", so keep seeds positive. The runs share numpy's stream but
        # always interleave the same way, so the result is still a pure function of `seed` and the data.
        runs = [
            cma.CMAEvolutionStrategy(
                box.inverse(x0.clamp(-1.0, 1.0)), sigma0, {**options, "seed": (seed % 100_000) * 1_000 + i + 1}
            )
            for i, x0 in enumerate(starts)
        ]
        best_x = [x0.clamp(-1.0, 1.0).clone() for x0 in starts]
        best_v = [float("-inf")] * len(runs)
        # The runs advance in lockstep so that one posterior call scores every run's population: a GP posterior
        # call costs ~10 ms of framework overhead whatever its size, and q runs x maxiter calls added up.
        while active := [i for i, es in enumerate(runs) if not es.stop()]:
            asked = [runs[i].ask() for i in active]
            batch = torch.from_numpy(box(np.concatenate([np.asarray(xs) for xs in asked]))).clamp(-1.0, 1.0)
            with torch.no_grad(), flat_batches():
                vals = acq(batch.unsqueeze(-2))
            vals = torch.nan_to_num(vals, nan=-1e10, neginf=-1e10, posinf=-1e10)
            seen.append(batch)
            seen_values.append(vals)
            offset = 0
            for i, xs in zip(active, asked, strict=True):
                run_vals = vals[offset : offset + len(xs)]
                runs[i].tell(xs, (-run_vals).tolist())
                j = int(torch.argmax(run_vals))
                if float(run_vals[j]) > best_v[i]:
                    best_v[i], best_x[i] = float(run_vals[j]), batch[offset + j].clone()
                offset += len(xs)
    finally:
        np.random.set_state(np_state)
    return (
        torch.stack(best_x),
        torch.tensor(best_v, dtype=torch.float64),
        torch.cat(seen),
        torch.cat(seen_values),
    )


class _Box:
    """pycma's transformation of an unbounded genotype into [-1, 1]^d, for a whole population at once.

    The same element-wise steps as ``cma.transformations.BoxConstraintsLinQuadTransformation.__call__`` (shift by
    whole periods, mirror, then the quadratic margins), with its margins, so the phenotypes are identical to the
    last bit; ``inverse`` (the start point's genotype) is pycma's own.
    """

    def __init__(self, d: int) -> None:
        from cma.transformations import BoxConstraintsLinQuadTransformation

        self._tf = BoxConstraintsLinQuadTransformation([[-1.0, 1.0]])
        self._tf.initialize(d)
        self.lb, self.ub = self._tf._lb, self._tf._ub
        self.al, self.au = self._tf._al, self._tf._au
        self.maxstd = (self.ub - self.lb) * (1 / 3)  # what pycma sets with bounds (``maxstd_boundrange``)

    def inverse(self, x: Tensor) -> list[float]:
        return [float(v) for v in self._tf.inverse(x.tolist())]

    def __call__(self, genotypes: np.ndarray) -> np.ndarray:
        y = np.array(genotypes, dtype=float)
        lb, ub, al, au = (np.broadcast_to(v, y.shape) for v in (self.lb, self.ub, self.al, self.au))
        i = (y < lb - 2 * al - (ub - lb) / 2.0) | (y > ub + 2 * au + (ub - lb) / 2.0)  # shift by whole periods
        period, start = 2 * (ub[i] - lb[i] + al[i] + au[i]), lb[i] - 2 * al[i] - (ub[i] - lb[i]) / 2.0
        y[i] -= period * ((y[i] - start) // period)
        i = y > ub + au  # mirror
        y[i] -= 2 * (y[i] - ub[i] - au[i])
        i = y < lb - al
        y[i] += 2 * (lb[i] - al[i] - y[i])
        i = y < lb + al  # the quadratic margins
        y[i] = lb[i] + (y[i] - (lb[i] - al[i])) ** 2 / 4 / al[i]
        i = y > ub - au
        y[i] = ub[i] - (y[i] - (ub[i] + au[i])) ** 2 / 4 / au[i]
        return y


def _optimize_botorch(
    model: Model, q: int, d: int, *, seed: int, num_restarts: int, raw_samples: int
) -> tuple[Tensor, Tensor]:
    """``optimize_acqf`` within the box; q > 1 uses qLogEI built greedily (sequential) over the batch."""
    best_f = _incumbent(model)
    if q == 1:
        acq = log_expected_improvement(model, best_f)
    else:
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([128]), seed=seed)
        acq = qLogExpectedImprovement(model=model, best_f=best_f, sampler=sampler)
    bounds = torch.stack([-torch.ones(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
    candidates, _ = optimize_acqf(
        acq,
        bounds=bounds,
        q=q,
        num_restarts=num_restarts,
        raw_samples=raw_samples,
        sequential=q > 1,
        options={"seed": seed, "maxiter": 200},
    )
    # Rank each candidate by its own (analytic) log-EI so the dedupe keeps the most promising ones first.
    with torch.no_grad():
        values = log_expected_improvement(model, best_f)(candidates.unsqueeze(-2))
    return candidates.detach(), values.detach()
