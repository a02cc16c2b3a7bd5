"""The coupled kernel's fast posterior path (cached W(Z) and K_S W(Z), batches solved as one right-hand side) against
a plain botorch evaluation: the same fitted GP, but with a kernel that writes the formula out and caches nothing.

The acquisition optimiser calls the posterior on hundreds of points at a time; these tests make sure the shortcuts
give the same log-EI (and posterior mean and variance) as the formula, and that they follow hyperparameter changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.models import SingleTaskGP
from gpytorch.kernels import Kernel, ScaleKernel

from engine.bo import fit_surrogate, sobol_points
from engine.bo.acquisition import dedupe_candidates
from engine.bo.kernel import InstructionCoupledKernel, LatentResidualKernel, flat_batches


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _matern52(a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """Matern-5/2 from its definition (pairwise differences, no distance tricks), broadcasting over batches."""
    diff = (a.unsqueeze(-2) - b.unsqueeze(-3)) / lengthscale.reshape(-1)
    r = diff.pow(2).sum(-1).sqrt()
    return (1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2) * torch.exp(-math.sqrt(5) * r)


class _PlainCoupled(Kernel):
    """k_z(x1, Z) A^-1 K_S A^-1 k_z(Z, x2), A = K_ZZ + eps I, recomputed on every call; with ``residual_variance``
    the latent residual v * [k_z(x1, x2) - k_z(x1, Z) A^-1 k_z(Z, x2)] instead."""

    def __init__(self, coupled: InstructionCoupledKernel, residual_variance: float | None = None) -> None:
        super().__init__()
        self.Z, self.S, self.eps = coupled.train_z.clone(), coupled.train_scores.clone(), coupled.eps
        self.ls_z = coupled.latent_kernel.lengthscale.detach().clone()
        self.ls_s = coupled.score_kernel.lengthscale.detach().clone()
        self.residual_variance = residual_variance

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        a = _matern52(self.Z, self.Z, self.ls_z) + self.eps * torch.eye(self.Z.shape[0], dtype=self.Z.dtype)
        k1, k2 = _matern52(x1, self.Z, self.ls_z), _matern52(self.Z, x2, self.ls_z)
        w2 = torch.linalg.solve(a, k2)  # (..., n, n2)
        if self.residual_variance is None:
            w1 = torch.linalg.solve(a, k1.transpose(-2, -1))
            covar = w1.transpose(-2, -1) @ _matern52(self.S, self.S, self.ls_s) @ w2
        else:
            covar = self.residual_variance * (_matern52(x1, x2, self.ls_z) - k1 @ w2)
        return covar.diagonal(dim1=-2, dim2=-1) if diag else covar


def _history(n: int = 18, d: int = 4, m: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantised per-example scores with repeated score vectors, as a real task gives."""
    Z = sobol_points(n, d, seed=5)
    centres = torch.tensor([[0.3] * d, [-0.4] * d, [0.0] * d], dtype=torch.float64)
    which = torch.cdist(Z, centres).argmin(-1)
    g = torch.Generator().manual_seed(0)
    vectors = (torch.rand(3, m, generator=g, dtype=torch.float64) < torch.tensor([[0.8], [0.3], [0.0]])).double()
    S = vectors[which]
    return Z, S, S.mean(-1)


def _parts(model: SingleTaskGP) -> tuple[InstructionCoupledKernel, ScaleKernel, LatentResidualKernel | None]:
    covar = model.covar_module
    if isinstance(covar, ScaleKernel):
        return covar.base_kernel, covar, None
    scaled, residual = covar.kernels
    return scaled.base_kernel, scaled, residual


def _plain_copy(model: SingleTaskGP) -> SingleTaskGP:
    """The same GP (data, mean, output scale, noise) with the uncached formula kernel, in eval mode."""
    coupled, scaled, residual = _parts(model)
    kernel = ScaleKernel(_PlainCoupled(coupled))
    kernel.outputscale = scaled.outputscale.detach().clone()
    if residual is not None:
        kernel = kernel + _PlainCoupled(coupled, residual.variance)
    plain = SingleTaskGP(model.train_inputs[0], model.train_targets.unsqueeze(-1), covar_module=kernel,
                         outcome_transform=None)
    plain.mean_module.load_state_dict(model.mean_module.state_dict())
    plain.likelihood.load_state_dict(model.likelihood.state_dict())
    return plain.eval()


def _points(Z: torch.Tensor) -> torch.Tensor:
    """Random points in the box, the training points themselves and points just next to them: (b, 1, d)."""
    g = torch.Generator().manual_seed(1)
    random = torch.rand(200, Z.shape[-1], generator=g, dtype=torch.float64) * 2 - 1
    near = (Z + 0.01 * torch.randn(Z.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return torch.cat([random, Z, near]).unsqueeze(-2)


def _assert_same_acquisition(model: SingleTaskGP, X: torch.Tensor) -> None:
    """log-EI, posterior mean and variance of ``model`` (its caches, and inside ``flat_batches`` as CMA-ES calls it)
    against the same GP with the plain formula kernel."""
    plain = _plain_copy(model)
    best_f = model.train_targets.max()
    with torch.no_grad():
        plain_post = plain.posterior(X)
        reference = LogExpectedImprovement(plain, best_f)(X)
        for flat in (False, True):
            with flat_batches() if flat else nullcontext():
                fast_post = model.posterior(X)
                fast = LogExpectedImprovement(model, best_f)(X)
            torch.testing.assert_close(fast_post.mean, plain_post.mean, rtol=0, atol=1e-8)
            torch.testing.assert_close(fast_post.variance, plain_post.variance, rtol=0, atol=1e-8)
            assert torch.isfinite(fast).all()
            torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", ["coupled", "coupled_residual"])
def test_fast_posterior_matches_plain_botorch_evaluation(kernel: str) -> None:
    Z, S, y = _history()
    torch.manual_seed(0)
    model = fit_surrogate(Z, S, y, kernel=kernel)
    X = _points(Z)
    _assert_same_acquisition(model, X)
    # Again on the same model object: now every training-side part comes from the caches.
    _assert_same_acquisition(model, X)
    # The folded batch of flat_batches against one point at a time (a batch of one has nothing to fold).
    acq = LogExpectedImprovement(model, model.train_targets.max())
    with torch.no_grad():
        with flat_batches():
            batch = acq(X)
        single = torch.cat([acq(x.unsqueeze(0)) for x in X[:5]])
    torch.testing.assert_close(single, batch[:5], rtol=1e-9, atol=1e-9)


def test_fast_posterior_follows_hyperparameter_changes() -> None:
    # gpytorch's setters write through .data, which leaves the version counters alone: the caches must notice anyway.
    Z, S, y = _history()
    torch.manual_seed(0)
    model = fit_surrogate(Z, S, y)
    X = _points(Z)
    _assert_same_acquisition(model, X)  # fills the caches
    coupled, _, _ = _parts(model)
    coupled.score_kernel.lengthscale = coupled.score_kernel.lengthscale.detach() * 1.7
    coupled.latent_kernel.lengthscale = coupled.latent_kernel.lengthscale.detach() * 0.6
    model.prediction_strategy = None  # gpytorch's own training-side caches are cleared the same way by a refit
    _assert_same_acquisition(model, X)


def test_training_side_cache_is_used_under_a_frozen_latent_kernel() -> None:
    # While fitting with the latent lengthscales frozen, W(Z) is the same tensor on every call (not recomputed),
    # and the kernel matrix it gives is the one an uncached evaluation gives.
    Z, S, _ = _history()
    kernel = InstructionCoupledKernel(Z, S).double()
    kernel.latent_kernel.raw_lengthscale.requires_grad_(False)
    first = kernel.latent_weights(Z)
    assert kernel.latent_weights(Z).data_ptr() == first.data_ptr()
    covar = kernel.forward(Z, Z)
    assert covar.requires_grad  # the score kernel still learns
    reference = _PlainCoupled(kernel).forward(Z, Z)
    torch.testing.assert_close(covar.detach(), reference, rtol=0, atol=1e-8)


def _dedupe_row_by_row(candidates: torch.Tensor, observed: torch.Tensor, q: int, tol: float) -> torch.Tensor:
    kept: list[torch.Tensor] = []
    for x in candidates:
        pool = torch.cat([observed, *(k.unsqueeze(0) for k in kept)])
        if pool.shape[0] and bool(((pool - x).abs().amax(dim=-1) < tol).any()):
            continue
        kept.append(x)
        if len(kept) == q:
            break
    return torch.stack(kept) if kept else candidates.new_zeros((0, candidates.shape[-1]))


def test_blockwise_dedupe_keeps_the_rows_a_row_by_row_pass_keeps() -> None:
    g = torch.Generator().manual_seed(3)
    for trial in range(40):
        n_cand, n_obs = int(torch.randint(0, 1500, (1,), generator=g)), int(torch.randint(0, 40, (1,), generator=g))
        # Coordinates on a 0.1 grid: many candidates exactly at the tolerance from each other or an observed point.
        candidates = torch.round((torch.rand(n_cand, 3, generator=g, dtype=torch.float64) * 2 - 1) * 10) / 10
        observed = torch.round((torch.rand(n_obs, 3, generator=g, dtype=torch.float64) * 2 - 1) * 10) / 10
        q, tol = int(torch.randint(1, 25, (1,), generator=g)), [0.1, 0.2, 0.35][trial % 3]
        got = dedupe_candidates(candidates, observed, q, tol=tol)
        assert torch.equal(got, _dedupe_row_by_row(candidates, observed, q, tol)), trial
