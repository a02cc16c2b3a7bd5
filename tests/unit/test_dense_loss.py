"""The latent GP's dense marginal-likelihood loss (engine.bo.surrogate.dense_exact_closure) against gpytorch's own."""

from __future__ import annotations

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models.transforms.outcome import Standardize
from botorch.optim.closures import get_loss_closure_with_grads
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

import engine.bo.surrogate as surrogate
from engine.bo.kernel import InstructionCoupledKernel
from engine.bo.surrogate import dense_exact_closure


def _data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Z = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * Z[:, 0]) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return Z, (y - y.mean()) / y.std()


def _latent_mll(n: int = 30, d: int = 4, seed: int = 0) -> ExactMarginalLogLikelihood:
    Z, y = _data(n, d, seed)
    model = surrogate._latent_gp(Z, y, fit=False)
    return ExactMarginalLogLikelihood(model.likelihood, model)


def _move(parameters: dict[str, torch.Tensor], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in parameters.values():
            p.add_(0.5 * torch.rand(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_loss_and_gradients_equal_gpytorchs(seed: int) -> None:
    mll = _latent_mll(seed=seed)
    dense = dense_exact_closure(mll)
    assert dense is not None
    reference = get_loss_closure_with_grads(mll, parameters=dense.parameters)
    for step in range(4):  # the starting point, then hyperparameters moved away from it
        value, grads = dense()
        expected, expected_grads = reference()
        assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-12, abs=1e-12)
        for name, got, want in zip(dense.parameters, grads, expected_grads, strict=True):
            assert got is not None and want is not None, name
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=name)
        _move(dense.parameters, seed * 10 + step)


def test_fit_with_dense_loss_reaches_gpytorchs_optimum() -> None:
    optima = []
    for dense in (False, True):
        mll = _latent_mll(n=40, d=5, seed=3)
        fit_gpytorch_mll(mll, closure=dense_exact_closure(mll) if dense else None)
        mll.train()
        with torch.no_grad():
            optima.append(float(mll(mll.model(*mll.model.train_inputs), mll.model.train_targets)))
    # The same function to the last digits, but L-BFGS-B's path follows rounding on the flat ridges of this
    # likelihood and stops at another point of nearly the same height: 1e-4 per data point apart where this test
    # was written, 2e-3 with the packages a fresh set-up installed on 2026-12-07 (the same on main before any
    # change). A wrong loss or gradient lands far from gpytorch's optimum, not within a few thousandths.
    assert optima[1] == pytest.approx(optima[0], abs=5e-3)


def test_which_fits_use_the_dense_loss_and_the_looser_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []

    def spy(mll: ExactMarginalLogLikelihood, closure: object = None, optimizer_kwargs: object = None) -> None:
        calls.append((closure, optimizer_kwargs))

    monkeypatch.setattr(surrogate, "fit_gpytorch_mll", spy)
    Z, y = _data(12, 3, seed=5)
    S = torch.stack([y, -y], dim=-1)
    surrogate.fit_surrogate(Z, S, y, kernel="coupled")
    assert len(calls) == 2
    prefit, coupled = calls
    # The latent prefit (a plain Matern GP): the dense loss, and the looser stop.
    assert prefit[0] is not None and prefit[1] == {"options": {"ftol": surrogate.PREFIT_FTOL}}
    # The coupled kernel is not a Matern kernel: gpytorch's own loss, scipy's own tolerance.
    assert coupled == (None, None)
    calls.clear()
    surrogate.fit_surrogate(Z, S, y, kernel="matern")
    (matern,) = calls
    assert matern[0] is not None and matern[1] is None  # the ablation's fit keeps scipy's tolerance


def test_not_applicable_or_disagreeing_models_get_none(monkeypatch: pytest.MonkeyPatch) -> None:
    Z, y = _data(10, 3, seed=6)
    coupled = surrogate._make_gp(Z, y, ScaleKernel(InstructionCoupledKernel(Z, torch.stack([y, y], -1))))
    assert dense_exact_closure(ExactMarginalLogLikelihood(coupled.likelihood, coupled)) is None
    model = surrogate._latent_gp(Z, y, fit=False)
    model.outcome_transform = Standardize(m=1)
    assert dense_exact_closure(ExactMarginalLogLikelihood(model.likelihood, model)) is None
    # A disagreement at the starting point (as a changed gpytorch default would give): not used.
    monkeypatch.setattr(surrogate, "DENSE_LOSS_RTOL", -1.0)
    assert dense_exact_closure(_latent_mll()) is None


def test_a_matrix_that_is_not_positive_definite_takes_gpytorchs_path() -> None:
    Z, y = _data(8, 2, seed=7)
    Z = torch.cat([Z, Z])  # every point twice: the kernel matrix is singular without noise
    y = torch.cat([y, y])
    model = surrogate._latent_gp(Z, y, fit=False)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    dense = dense_exact_closure(mll)
    assert dense is not None
    with torch.no_grad():
        # Far below the noise's bound (only the optimiser keeps to it): duplicated rows make the matrix singular.
        model.likelihood.noise_covar.raw_noise.fill_(1e-300)
    value, _ = dense()
    expected, _ = get_loss_closure_with_grads(mll, parameters=dense.parameters)()
    assert torch.isfinite(value)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)
