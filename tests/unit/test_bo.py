"""Unit tests for engine.bo: the coupled kernel against its formula, the surrogate, proposals, and BO vs random."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from engine.bo import (
    InstructionCoupledKernel,
    fit_surrogate,
    optimise_synthetic,
    propose,
    sobol_points,
    standardise,
)
from engine.bo.acquisition import MIN_DISTANCE, cmaes_starts
from engine.bo.kernel import LatentResidualKernel, cholesky_with_jitter


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # The matrices here are tiny: a second BLAS thread only adds contention on a 2-core machine (up to 10x slower).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rand(*shape: int, seed: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)


def _matern52(a: np.ndarray, b: np.ndarray, lengthscale: np.ndarray | float) -> np.ndarray:
    """Matern-5/2 written out by hand: (1 + sqrt5 r + 5/3 r^2) exp(-sqrt5 r), r the scaled distance."""
    diff = (a[:, None, :] - b[None, :, :]) / lengthscale
    r = np.sqrt((diff**2).sum(-1))
    return (1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2) * np.exp(-math.sqrt(5) * r)


def _kernel_with_hypers(n: int = 7, d: int = 3, m: int = 5, eps: float = 1e-3) -> InstructionCoupledKernel:
    Z = _rand(n, d, seed=1)
    S = _rand(n, m, seed=2, low=0.0, high=1.0)
    kernel = InstructionCoupledKernel(Z, S, eps=eps).double()
    kernel.latent_kernel.lengthscale = torch.tensor([[0.7, 1.3, 0.9]], dtype=torch.float64)
    kernel.score_kernel.lengthscale = torch.tensor(0.8, dtype=torch.float64)
    return kernel


# 1. The kernel against a direct evaluation of the formula ---------------------------------------------------------


def test_coupled_kernel_matches_direct_formula() -> None:
    kernel = _kernel_with_hypers()
    Z, S = kernel.train_z.numpy(), kernel.train_scores.numpy()
    ls_z, ls_s = np.array([0.7, 1.3, 0.9]), 0.8
    x1, x2 = _rand(5, 3, seed=3), _rand(4, 3, seed=4)

    # K(x1, x2) = k_z(x1, Z) (K_ZZ + eps I)^-1 K_S (K_ZZ + eps I)^-1 k_z(Z, x2), with plain numpy solves.
    a = _matern52(Z, Z, ls_z) + kernel.eps * np.eye(len(Z))
    k_s = _matern52(S, S, ls_s)
    expected = _matern52(x1.numpy(), Z, ls_z) @ np.linalg.solve(
        a, k_s @ np.linalg.solve(a, _matern52(Z, x2.numpy(), ls_z))
    )

    with torch.no_grad():
        got_forward = kernel.forward(x1, x2)
        got_lazy = kernel(x1, x2).to_dense()
        # A botorch-style batch (b x n x d) must broadcast against the stored (n x d) training points.
        got_batch = kernel.forward(x1.expand(2, 5, 3), x2.expand(2, 4, 3))
    assert got_forward.dtype == torch.float64
    np.testing.assert_allclose(got_forward.numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got_lazy.numpy(), expected, atol=1e-6, rtol=0)
    for b in range(2):
        np.testing.assert_allclose(got_batch[b].numpy(), expected, atol=1e-6, rtol=0)


def test_coupled_kernel_reproduces_score_kernel_on_training_points() -> None:
    # The point of the coupling: on the training set the kernel is (almost) the instruction-score kernel K_S.
    kernel = _kernel_with_hypers(eps=1e-8)
    with torch.no_grad():
        on_train = kernel.forward(kernel.train_z, kernel.train_z)
        k_s = kernel.score_kernel.forward(kernel.train_scores, kernel.train_scores)
    np.testing.assert_allclose(on_train.numpy(), k_s.numpy(), atol=1e-4)


def test_residual_kernel_matches_direct_formula() -> None:
    kernel = _kernel_with_hypers()
    residual = LatentResidualKernel(kernel, variance=0.7)
    Z, ls_z = kernel.train_z.numpy(), np.array([0.7, 1.3, 0.9])
    x1, x2 = _rand(5, 3, seed=5), _rand(4, 3, seed=6)
    a = _matern52(Z, Z, ls_z) + kernel.eps * np.eye(len(Z))
    k1z, kz2 = _matern52(x1.numpy(), Z, ls_z), _matern52(Z, x2.numpy(), ls_z)
    expected = 0.7 * (_matern52(x1.numpy(), x2.numpy(), ls_z) - k1z @ np.linalg.solve(a, kz2))
    with torch.no_grad():
        got = residual.forward(x1, x2)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


def test_cholesky_with_jitter_handles_singular_matrix() -> None:
    v = torch.ones(4, 1, dtype=torch.float64)
    factor = cholesky_with_jitter(v @ v.T)  # rank 1: plain Cholesky fails
    assert torch.isfinite(factor).all()
    np.testing.assert_allclose((factor @ factor.T).numpy(), (v @ v.T).numpy(), atol=1e-4)


# 2. Symmetric positive semi-definite -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_residual", [False, True])
def test_kernel_matrix_is_symmetric_psd(with_residual: bool) -> None:
    Z = _rand(12, 4, seed=10)
    S = (_rand(12, 6, seed=11, low=0.0, high=1.0) > 0.5).double()  # 0/1 per-example scores, with duplicates
    S[3] = S[4]  # two latent points that produced the same instruction
    kernel = InstructionCoupledKernel(Z, S)
    x = torch.cat([_rand(30, 4, seed=12), Z[:5]])
    with torch.no_grad():
        K = kernel.forward(x, x)
        if with_residual:
            K = K + LatentResidualKernel(kernel).forward(x, x)
    assert torch.equal(K, K.T)
    assert torch.linalg.eigvalsh(K).min().item() >= -1e-8


# 3. diag=True ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_residual", [False, True])
def test_diag_agrees_with_full_matrix(with_residual: bool) -> None:
    base = _kernel_with_hypers()
    kernel = LatentResidualKernel(base) if with_residual else base
    x = _rand(9, 3, seed=20)
    with torch.no_grad():
        full = kernel.forward(x, x)
        diag = kernel.forward(x, x, diag=True)
        lazy_diag = kernel(x, x, diag=True)
    np.testing.assert_allclose(diag.numpy(), full.diagonal().numpy(), atol=1e-10)
    np.testing.assert_allclose(lazy_diag.numpy(), full.diagonal().numpy(), atol=1e-10)


# 4. Standardisation and fitting ------------------------------------------------------------------------------------


def test_standardise_constant_y_does_not_divide_by_zero() -> None:
    scaled, stats = standardise(torch.full((5,), 0.4, dtype=torch.float64))
    assert stats.std == 1.0 and stats.mean == pytest.approx(0.4)
    assert torch.equal(scaled, torch.zeros(5, dtype=torch.float64))
    one, _ = standardise(torch.tensor([0.3], dtype=torch.float64))
    assert torch.isfinite(one).all()


@pytest.mark.parametrize("kernel", ["coupled", "coupled_residual", "matern"])
def test_fit_surrogate_constant_y_has_no_nan(kernel: str) -> None:
    Z = _rand(10, 3, seed=30)
    S = torch.zeros(10, 4, dtype=torch.float64)  # every instruction failed every example: a common start
    model = fit_surrogate(Z, S, torch.zeros(10, dtype=torch.float64), kernel=kernel)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad():
        post = model.posterior(_rand(6, 3, seed=31))
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()


def test_failed_fit_keeps_initial_hyperparameters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import engine.bo.surrogate as surrogate

    def broken_fit(mll: object, **kwargs: object) -> None:
        # Half-way through a real failure the parameters can be garbage: simulate that, then fail.
        for p in mll.model.parameters():  # type: ignore[attr-defined]
            p.data.fill_(float("nan"))
        raise surrogate.ModelFittingError("simulated")

    monkeypatch.setattr(surrogate, "fit_gpytorch_mll", broken_fit)
    Z, S = _rand(8, 3, seed=35), _rand(8, 4, seed=36, low=0.0, high=1.0)
    initial = fit_surrogate(Z, S, S.mean(-1), fit=False)
    with caplog.at_level("WARNING", logger="engine.bo.surrogate"):
        model = fit_surrogate(Z, S, S.mean(-1))
    assert "keeping the initial hyperparameters" in caplog.text
    for (name, a), (_, b) in zip(model.named_parameters(), initial.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.isfinite(model.posterior(Z).mean).all()


def test_fit_surrogate_learns_something() -> None:
    Z = _rand(20, 2, seed=40)
    y = -(Z**2).sum(-1)
    S = torch.stack([torch.exp(-(Z[:, 0] ** 2)), torch.exp(-(Z[:, 1] ** 2))], dim=-1)
    model = fit_surrogate(Z, S, y)
    stats = model.y_standardisation
    with torch.no_grad():
        mean = model.posterior(Z).mean.squeeze(-1) * stats.std + stats.mean
    assert torch.corrcoef(torch.stack([mean, y]))[0, 1] > 0.95
    with pytest.raises(ValueError):
        fit_surrogate(Z, S, y, kernel="nope")  # type: ignore[arg-type]


# 5. propose --------------------------------------------------------------------------------------------------------


def _toy_data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    Z = sobol_points(n, d, seed)
    S = torch.exp(-((Z - 0.3) ** 2) / 0.5)
    return Z, S, S.mean(-1)


def test_sobol_points_are_seeded_and_in_the_box() -> None:
    a, b = sobol_points(16, 10, seed=3), sobol_points(16, 10, seed=3)
    assert a.shape == (16, 10) and a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, sobol_points(16, 10, seed=4))
    assert a.min() >= -1 and a.max() <= 1
    # skip continues the same sequence rather than repeating it
    assert torch.equal(sobol_points(20, 10, seed=3)[16:], sobol_points(4, 10, seed=3, skip=16))


def test_cmaes_starts_are_the_best_points_even_for_a_column_y() -> None:
    Z = _rand(6, 2, seed=50)
    # (n, 1): the shape on which the seed's argsort ran along the wrong axis
    y = torch.tensor([[0.1], [0.9], [0.3], [0.8], [0.2], [0.5]], dtype=torch.float64)
    np.testing.assert_array_equal(cmaes_starts(Z, y, 3).numpy(), Z[[1, 3, 5]].numpy())
    assert cmaes_starts(Z, y, 8).shape == (8, 2)  # cycled when q exceeds n


@pytest.mark.parametrize(
    ("kernel", "optimizer"), [("coupled_residual", "cmaes"), ("coupled", "cmaes"), ("coupled", "botorch")]
)
def test_propose_in_box_distinct_and_deterministic(kernel: str, optimizer: str) -> None:
    Z, S, y = _toy_data(12, 3, seed=0)
    rng_before = torch.random.get_rng_state()
    a = propose(Z, S, y, 5, seed=7, kernel=kernel, optimizer=optimizer)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is left alone
    b = propose(Z, S, y, 5, seed=7, kernel=kernel, optimizer=optimizer)
    assert a.shape == (5, 3) and a.dtype == torch.float64
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    # q distinct points, spread at least MIN_DISTANCE apart (max-abs) from each other and from the observed ones
    gaps = (a[:, None, :] - a[None, :, :]).abs().amax(-1) + torch.eye(5, dtype=torch.float64) * 9
    assert gaps.min() >= MIN_DISTANCE
    assert ((a[:, None, :] - Z[None]).abs().amax(-1)).min() >= MIN_DISTANCE


def test_propose_falls_back_to_sobol_without_signal() -> None:
    Z, S, _ = _toy_data(6, 4, seed=1)
    flat = propose(Z, S, torch.full((6,), 0.25, dtype=torch.float64), 3, seed=2)
    assert torch.equal(flat, sobol_points(3, 4, seed=2, skip=6))
    single = propose(Z[:1], S[:1], torch.tensor([0.5], dtype=torch.float64), 2, seed=2)
    assert single.shape == (2, 4) and single.abs().max() <= 1
    empty = propose(Z[:0], S[:0], torch.zeros(0, dtype=torch.float64), 2, seed=2)
    assert torch.equal(empty, sobol_points(2, 4, seed=2))
    # A failed evaluation (NaN score) is ignored rather than poisoning the fit.
    y = S.mean(-1)
    y[2] = float("nan")
    assert torch.isfinite(propose(Z, S, y, 2, seed=2)).all()


# 6. BO beats random search -----------------------------------------------------------------------------------------

_CENTRE = torch.tensor([-0.6, -0.17, 0.27, 0.7], dtype=torch.float64)


def _bumps(z: torch.Tensor) -> tuple[float, torch.Tensor]:
    """A smooth 4-d objective shaped like an instruction's dev score: the mean of per-"example" scores in [0, 1]."""
    per_example = torch.exp(-((z - _CENTRE) ** 2) / (2 * 0.4**2))
    return float(per_example.mean()), per_example


def test_bo_beats_random_search_on_average() -> None:
    seeds = range(5)  # fixed in advance, not picked: the first five
    budget = dict(d=4, n_init=8, n_iter=3, q=4)
    bo = [optimise_synthetic(_bumps, **budget, seed=s, method="bo")[-1] for s in seeds]
    rnd = [optimise_synthetic(_bumps, **budget, seed=s, method="random")[-1] for s in seeds]
    assert len(optimise_synthetic(_bumps, **budget, seed=0, method="random")) == 8 + 3 * 4
    assert np.mean(bo) > np.mean(rnd), (bo, rnd)
