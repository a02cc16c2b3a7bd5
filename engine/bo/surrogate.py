"""The GP surrogate: a botorch ``SingleTaskGP`` over the latent space, with the instruction-coupled kernel.

A fresh model is built from the data at every BO step (the coupled kernel stores the training set inside itself, so it
cannot be updated in place), then fitted by maximising the marginal likelihood. A failed fit is not fatal: the runner
has paid for its evaluations and must still get proposals, so we keep the prior hyperparameters and log a warning.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.utils import get_parameters_and_bounds
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

from engine.bo.kernel import DEFAULT_EPS, InstructionCoupledKernel, LatentResidualKernel, dim_scaled_matern

__all__ = ["KernelName", "Standardisation", "fit_surrogate", "standardise"]

log = logging.getLogger(__name__)

KernelName = Literal["coupled", "coupled_residual", "matern"]

#: L-BFGS-B's relative tolerance for the coupled kernels' latent prefit. At scipy's default (2.2e-9) it spends 200-450
#: loss evaluations creeping along lengthscales that plateau-shaped scores leave flat; at 1e-6, 70-160, with the
#: marginal log-likelihood within 0.0003-0.005 per point. Where the fit stops on such a ridge is already at the
#: mercy of rounding (a loss scaled by 1 + 2^-52 moves the synthetic benchmark's mean best value by up to 0.08,
#: BENCHMARKS.md), and the looser stop measured inside that spread, for about half a BO step's time.
PREFIT_FTOL = 1e-6

#: Below this standard deviation the targets are treated as constant: dividing by it would amplify rounding noise
#: into O(1) "signal" (or, at exactly zero, produce NaN: the seed's bug).
MIN_STD = 1e-9


@dataclass(frozen=True)
class Standardisation:
    """The (mean, std) used to standardise y; ``std`` is 1.0 when y is (numerically) constant."""

    mean: float
    std: float


def standardise(y: Tensor) -> tuple[Tensor, Standardisation]:
    """Return (y - mean) / std and the (mean, std) used.

    A constant (or single) y gets std 1.0, so it maps to zeros instead of NaN: the seed divided by a zero std, which
    poisoned the whole fit whenever every initial instruction scored the same (common early on: all zeros).
    """
    y = y.reshape(-1)
    mean = float(y.mean()) if y.numel() else 0.0
    std = float(y.std()) if y.numel() > 1 else 0.0
    if not (std > MIN_STD and torch.isfinite(torch.tensor(std))):
        std = 1.0
    return (y - mean) / std, Standardisation(mean=mean, std=std)


def _make_gp(Z: Tensor, y_std: Tensor, covar_module: Kernel) -> SingleTaskGP:
    with warnings.catch_warnings():
        # We standardise y ourselves (a constant y stays at zeros and would trip the "not standardised" check), and
        # the latent space is [-1, 1]^d by design, not the unit cube botorch's check expects.
        warnings.simplefilter("ignore", InputDataWarning)
        return SingleTaskGP(Z, y_std.unsqueeze(-1), covar_module=covar_module, outcome_transform=None)


def _latent_gp(Z: Tensor, y_std: Tensor, *, fit: bool, ftol: float | None = None) -> SingleTaskGP:
    """A plain Matern-5/2 ARD GP on z: the "matern" ablation, and the source of the coupled kernels' latent kernel.

    ``ftol``: L-BFGS-B's relative tolerance on the loss (None: scipy's default, 2.2e-9); see ``PREFIT_FTOL``.
    """
    model = _make_gp(Z, y_std, ScaleKernel(dim_scaled_matern(Z.shape[-1], ard=True, input_range=2.0)))
    if fit:
        _fit_or_keep_prior(model, dense_loss=True, ftol=ftol)
    return model


def fit_surrogate(
    Z: Tensor,
    S: Tensor,
    y: Tensor,
    *,
    kernel: KernelName = "coupled",
    eps: float = DEFAULT_EPS,
    latent_prefit: bool = True,
    residual_variance: float | None = None,
    fit: bool = True,
) -> SingleTaskGP:
    """Fit a GP to latent points ``Z`` (n x d), score vectors ``S`` (n x m) and scores ``y`` (n); return it in eval mode.

    The model is trained on *standardised* y (see ``standardise``) and works in float64 (the coupled kernel solves with
    K_ZZ, which is badly conditioned in float32). ``model.y_standardisation`` holds the (mean, std) so callers can map
    predictions back: y = mean + std * f. ``S`` is ignored by ``kernel="matern"``.

    Kernels:

    * ``"coupled"``: the paper's ScaleKernel(InstructionCoupledKernel).
    * ``"coupled_residual"``: the same fitted model plus ``LatentResidualKernel``, so that the posterior is uncertain
      away from the data (the coupled kernel alone is nearly certain everywhere, and EI then only exploits).
    * ``"matern"``: a plain Matern-5/2 ARD kernel on z (ablation).

    ``latent_prefit``: on the training points the coupled kernel is ~K_S whatever k_z's lengthscales are, so its
    marginal likelihood is flat in them and they would stay wherever they started. With ``latent_prefit`` (the
    default) they are learned instead from a plain Matern GP on (Z, y), then held fixed while the score lengthscale,
    output scale and noise are fitted. ``False`` learns everything jointly, as the seed did.

    ``residual_variance`` (standardised units) scales the residual; by default it is the output scale of that
    latent GP (1.0 without ``latent_prefit``), i.e. far from the data the model is as unsure as a plain GP would be.

    If a marginal-likelihood fit fails (or leaves non-finite hyperparameters), that model keeps its initial (prior
    mode) hyperparameters and a warning is logged; the model is still usable.

    Length: the whole fit in the order it happens (inputs checked, kernel chosen, likelihood fitted, the
    fallback path), so one read shows every way a fit can go.
    """
    Z = torch.as_tensor(Z, dtype=torch.float64)
    S = torch.as_tensor(S, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if Z.ndim != 2 or S.ndim != 2:
        raise ValueError(f"Z must be (n, d) and S (n, m); got {tuple(Z.shape)} and {tuple(S.shape)}")
    if not (Z.shape[0] == S.shape[0] == y.shape[0]):
        raise ValueError(f"Z, S and y disagree on n: {Z.shape[0]}, {S.shape[0]}, {y.shape[0]}")
    if Z.shape[0] == 0:
        raise ValueError("cannot fit a surrogate to no data")
    if kernel not in ("coupled", "coupled_residual", "matern"):
        raise ValueError(f"unknown kernel {kernel!r}; expected 'coupled', 'coupled_residual' or 'matern'")

    y_std, stats = standardise(y)
    if kernel == "matern":
        model = _latent_gp(Z, y_std, fit=fit)
    else:
        latent_kernel = None
        prior_variance = 1.0
        if latent_prefit:
            latent = _latent_gp(Z, y_std, fit=fit, ftol=PREFIT_FTOL)
            latent_kernel = latent.covar_module.base_kernel
            latent_kernel.raw_lengthscale.requires_grad_(False)
            prior_variance = float(latent.covar_module.outputscale.detach())
        coupled = InstructionCoupledKernel(Z, S, eps=eps, latent_kernel=latent_kernel)
        model = _make_gp(Z, y_std, ScaleKernel(coupled))
        if fit:
            _fit_or_keep_prior(model)
        if kernel == "coupled_residual":
            # Added after the fit: the residual is ~eps on the training points, so it cannot inform the marginal
            # likelihood (and its cancellation noise only slowed L-BFGS ~8x). It changes the variance, not the mean.
            variance = prior_variance if residual_variance is None else residual_variance
            model.covar_module = model.covar_module + LatentResidualKernel(coupled, variance=variance)
    model.y_standardisation = stats
    model.eval()
    return model


def _fit_or_keep_prior(model: SingleTaskGP, *, dense_loss: bool = False, ftol: float | None = None) -> None:
    """Maximise the marginal likelihood; on any failure restore the initial hyperparameters and warn.

    ``dense_loss``: evaluate the loss with ``dense_exact_closure`` (same optimiser, same parameters, the same value to
    rounding) where it applies to ``model``; see there for why. ``ftol``: L-BFGS-B's tolerance (None: scipy's).
    """
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputDataWarning)
            fit_gpytorch_mll(
                mll,
                closure=dense_exact_closure(mll) if dense_loss else None,
                optimizer_kwargs=None if ftol is None else {"options": {"ftol": ftol}},
            )
    except (ModelFittingError, NotPSDError, RuntimeError, ValueError) as exc:
        log.warning("GP marginal-likelihood fit failed (%s); keeping the initial hyperparameters", exc)
        model.load_state_dict(initial)
        return
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        log.warning("GP fit produced non-finite hyperparameters; keeping the initial hyperparameters")
        model.load_state_dict(initial)


#: How far (relative) the dense loss may be from gpytorch's at the starting point before it is not used: rounding
#: differences are ~1e-15; a real disagreement (a changed default in gpytorch or botorch) is O(1e-3) or more.
DENSE_LOSS_RTOL = 1e-9


def dense_exact_closure(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure | None:
    """A forward-backward closure of ``mll``'s loss computed on plain tensors, or None where it does not apply.

    Why: the latent GP's fit is most of a BO step's fit, and nearly all of it is L-BFGS-B's 200-400 loss evaluations
    through gpytorch's lazy tensors, priors and distributions, each a few milliseconds of Python for a 150 x 150
    Cholesky. The loss here is the same formula on dense tensors: -(log N(y; c, s K + noise I) + log priors) / n, with
    the kernel's own ``forward`` and the model's own priors, so it tracks gpytorch's kernel and prior code; only the
    Gaussian log-density is written out. It applies to a single-output exact GP with a ScaleKernel over a Matern
    kernel, a constant mean, a homoskedastic Gaussian likelihood and no input or outcome transform (the latent GP), and
    is used only if it equals gpytorch's own loss at the starting point (``DENSE_LOSS_RTOL``); otherwise None, and the
    fit uses gpytorch's closure as before.
    """
    model = mll.model
    kernel = model.covar_module
    if not (
        type(model.likelihood) is GaussianLikelihood
        and type(model.mean_module) is ConstantMean
        and type(kernel) is ScaleKernel
        and type(kernel.base_kernel) is MaternKernel
        and getattr(model, "input_transform", None) is None
        and getattr(model, "outcome_transform", None) is None
        and model.train_targets.ndim == 1
        and not list(model.added_loss_terms())
    ):
        return None
    (train_x,) = model.train_inputs
    train_y = model.train_targets
    n = train_y.shape[0]
    eye = torch.eye(n, dtype=train_x.dtype, device=train_x.device)
    constant = 0.5 * n * math.log(2.0 * math.pi)

    def gpytorch_loss() -> Tensor:
        return -mll(model(train_x), train_y)

    def loss() -> Tensor:
        covar = (
            kernel.outputscale * kernel.base_kernel.forward(train_x, train_x) + model.likelihood.noise * eye
        )
        factor, info = torch.linalg.cholesky_ex(covar)
        if bool(info):
            # Not positive definite at these hyperparameters: gpytorch's path retries with jitter; let it.
            return gpytorch_loss()
        residual = (train_y - model.mean_module.constant).unsqueeze(-1)
        whitened = torch.linalg.solve_triangular(factor, residual, upper=False)
        log_likelihood = -0.5 * whitened.square().sum() - factor.diagonal().log().sum() - constant
        for _, module, prior, closure, _ in model.named_priors():
            log_likelihood = log_likelihood + prior.log_prob(closure(module)).sum()
        return -log_likelihood / n

    # The same parameters, in the same order, as botorch's scipy fit pairs with the closure's gradients.
    parameters = get_parameters_and_bounds(mll, requires_grad=True)[0]
    mll.train()
    with torch.no_grad():
        reference, dense = float(gpytorch_loss()), float(loss())
    if not (math.isfinite(dense) and abs(dense - reference) <= DENSE_LOSS_RTOL * max(1.0, abs(reference))):
        log.debug("dense loss %r differs from gpytorch's %r; fitting with gpytorch's", dense, reference)
        return None
    return ForwardBackwardClosure(loss, parameters)
