"""The instruction-coupled kernel of InstructZero (Chen et al., ICML 2024, section 3.3).

Many soft prompts z decode to the same instruction, and what the black box rewards is the *instruction*, not z. The
coupled kernel therefore measures similarity between two latent points through the similarity of the instructions that
the training points produced, as seen by their per-example dev score vectors S:

    K(z1, z2) = k_z(z1, Z) (K_ZZ + eps I)^-1 K_S (K_ZZ + eps I)^-1 k_z(Z, z2)

``k_z`` is a Matern-5/2 ARD kernel on the latent space and ``K_S`` a Matern-5/2 kernel on the score vectors. At a
training point ``k_z(z_i, Z) (K_ZZ + eps I)^-1`` is (nearly) the unit vector ``e_i``, so the kernel reproduces the
instruction similarity ``K_S`` there and extends it smoothly (by kriging weights) to the rest of the latent space.

Unlike the seed implementation this one never forms an inverse: ``(K_ZZ + eps I)^-1 k_z(Z, x)`` comes from a Cholesky
solve, so the formula stays symmetric by construction (the seed multiplied by a *transposed* inverse, which is only
harmless while the inverse happens to be exactly symmetric).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, MaternKernel
from gpytorch.priors import LogNormalPrior
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

__all__ = [
    "InstructionCoupledKernel",
    "LatentResidualKernel",
    "cholesky_with_jitter",
    "dim_scaled_matern",
    "flat_batches",
]

#: Regularisation added to K_ZZ before solving; the seed's value. Large enough to keep near-duplicate latent points
#: (common: CMA-ES converges to similar z) from making the solve ill-posed, small enough to keep the interpolation.
DEFAULT_EPS = 1e-4


def dim_scaled_matern(num_dims: int, *, ard: bool, input_range: float = 1.0) -> MaternKernel:
    """A Matern-5/2 kernel with the dimension-scaled log-normal lengthscale prior of Hvarfner et al. (2024).

    That prior (botorch's default for unit-cube inputs) favours lengthscales that grow like sqrt(dims), which keeps a
    GP fitted on a handful of points in 10+ dimensions from collapsing to a spiky interpolant. ``input_range`` rescales
    it for inputs that do not span [0, 1] (the latent space is [-1, 1], so 2.0 there).
    """
    loc = math.sqrt(2.0) + 0.5 * math.log(num_dims) + math.log(input_range)
    prior = LogNormalPrior(loc=loc, scale=math.sqrt(3.0))
    return MaternKernel(
        nu=2.5,
        ard_num_dims=num_dims if ard else None,
        lengthscale_prior=prior,
        # A floor keeps the kernel matrices from turning into the identity (and the fit from chasing it).
        lengthscale_constraint=GreaterThan(2.5e-2 * input_range, transform=None, initial_value=prior.mode),
    )


def cholesky_with_jitter(matrix: Tensor, *, max_tries: int = 6) -> Tensor:
    """Lower Cholesky factor of a symmetric PSD ``matrix``, adding diagonal jitter (x10 per try) only when needed.

    Jitter starts at 1e-10 of the mean diagonal, so a well-conditioned matrix is factored exactly as given.
    Raises ``NotPSDError`` when even the largest jitter does not help (the matrix holds NaNs, say).
    """
    factor, info = torch.linalg.cholesky_ex(matrix)
    if not bool(info.any()):
        return factor
    scale = matrix.diagonal(dim1=-2, dim2=-1).abs().mean().clamp_min(1e-12)
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    jitter = 1e-10 * scale
    for _ in range(max_tries):
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        if not bool(info.any()):
            return factor
        jitter = jitter * 10.0
    raise NotPSDError(f"matrix is not positive definite even with jitter {float(jitter / 10.0):.1e}")


_FLAT_BATCHES: ContextVar[bool] = ContextVar("flat_batches", default=False)


@contextmanager
def flat_batches() -> Iterator[None]:
    """Let the coupled kernels fold a batch of test points into one matrix (without autograd only).

    The same numbers up to rounding (~1e-16), not bit for bit: a batched distance or solve accumulates in another
    order than one big one. CMA-ES only ranks the values of a generation, so its proposals came out identical on
    every history tried (bench/bench_bo_step.py), and it turns it on around its posterior calls. Elsewhere the
    kernels compute exactly as they always did: ``optimize_acqf``'s q-batch log-EI factors a nearly singular
    posterior covariance, and there 1e-16 decides the jitter and with it the proposal.
    """
    token = _FLAT_BATCHES.set(True)
    try:
        yield
    finally:
        _FLAT_BATCHES.reset(token)


def _flat_batches_on() -> bool:
    return _FLAT_BATCHES.get() and not torch.is_grad_enabled()


def _data_key(tensor: Tensor) -> tuple[int, int]:
    """Identity and in-place version of a training-data buffer (replaced, not edited, when the data change)."""
    return tensor.data_ptr(), tensor._version


def _values_key(parameters: Iterable[Tensor]) -> tuple[float, ...]:
    """The exact values of a few hyperparameters, as a hashable cache key."""
    return tuple(v for p in parameters for v in p.detach().reshape(-1).tolist())


class InstructionCoupledKernel(Kernel):
    """K(z1, z2) = k_z(z1, Z) (K_ZZ + eps I)^-1 K_S (K_ZZ + eps I)^-1 k_z(Z, z2).

    ``train_z`` (n x d) and ``train_scores`` (n x m) are stored as buffers: they are data, not parameters, and a
    fresh kernel is built whenever the training set grows. The learnable hyperparameters are the ARD lengthscales of
    ``latent_kernel`` and the single lengthscale of ``score_kernel``; wrap this kernel in a ``ScaleKernel`` for the
    output scale. (The marginal likelihood barely depends on the latent lengthscales, because on the training points
    the kernel is ~K_S whatever they are; ``fit_surrogate`` therefore learns them from a plain latent GP first.)

    The kernel is positive semi-definite for any hyperparameters: with W(x) = (K_ZZ + eps I)^-1 k_z(Z, x) it is
    W(x1)^T K_S W(x2), a Gram matrix of K_S's features. Its rank is at most n, which is why it has (almost) no prior
    variance away from the training points; see ``LatentResidualKernel``.
    """

    has_lengthscale = False

    def __init__(
        self,
        train_z: Tensor,
        train_scores: Tensor,
        *,
        eps: float = DEFAULT_EPS,
        latent_kernel: Kernel | None = None,
        score_kernel: Kernel | None = None,
        **kwargs: object,
    ) -> None:
        if train_z.ndim != 2 or train_scores.ndim != 2:
            raise ValueError("train_z must be (n, d) and train_scores (n, m)")
        if train_z.shape[0] != train_scores.shape[0]:
            raise ValueError(
                f"train_z has {train_z.shape[0]} rows but train_scores has {train_scores.shape[0]}"
            )
        if eps < 0:
            raise ValueError("eps must be >= 0")
        super().__init__(**kwargs)
        self.register_buffer("train_z", train_z)
        self.register_buffer("train_scores", train_scores.to(train_z))
        self.eps = float(eps)
        d, m = train_z.shape[-1], train_scores.shape[-1]
        # Latent points live in [-1, 1]^d: range 2. Score vectors are per-example metrics in [0, 1]^m: range 1.
        self.latent_kernel = (
            latent_kernel if latent_kernel is not None else dim_scaled_matern(d, ard=True, input_range=2.0)
        )
        self.score_kernel = score_kernel if score_kernel is not None else dim_scaled_matern(m, ard=False)
        self._latent_cache: tuple[object, tuple[Tensor, Tensor, Tensor]] | None = None
        self._score_cache: tuple[object, tuple[Tensor, Tensor]] | None = None

    def _latent_key(self, like: Tensor) -> object | None:
        """Cache key of the parts that depend on the training points and the latent kernel only; None: do not cache.

        They can be cached whenever no gradient can flow into them: without autograd (acquisition optimisation calls
        the posterior thousands of times with fixed hyperparameters), and also while fitting with the latent
        lengthscales frozen (``fit_surrogate``'s default latent prefit), where only the score kernel, output scale and
        noise are learned. The key holds the hyperparameters' *values* (a dozen numbers): gpytorch's ``initialize``
        and botorch's retry-from-the-prior write them through ``.data``, which bumps no version counter.
        """
        latent = list(self.latent_kernel.parameters())
        if torch.is_grad_enabled() and any(p.requires_grad for p in latent):
            return None
        return (like.dtype, like.device, *_data_key(self.train_z), *_values_key(latent))

    def _latent_parts(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(k_z(Z, Z), Cholesky factor of k_z(Z, Z) + eps I, W(Z) = (K_ZZ + eps I)^-1 k_z(Z, Z)), cached when allowed."""
        key = self._latent_key(like)
        if key is not None and self._latent_cache is not None and self._latent_cache[0] == key:
            return self._latent_cache[1]
        train_z = self.train_z.to(like)
        k_zz = self.latent_kernel.forward(train_z, train_z)
        eye = torch.eye(train_z.shape[0], dtype=like.dtype, device=like.device)
        factor = cholesky_with_jitter(k_zz + self.eps * eye)
        parts = (k_zz, factor, torch.cholesky_solve(k_zz, factor))
        self._latent_cache = (key, parts) if key is not None else None
        return parts

    def _score_parts(self, like: Tensor) -> tuple[Tensor, Tensor | None]:
        """(K_S, K_S W(Z)). Without autograd both are cached; with it (a fit learns the score kernel) K_S is
        recomputed and K_S W(Z), which only the no-autograd test/train shortcut uses, is None."""
        if torch.is_grad_enabled():
            train_scores = self.train_scores.to(like)
            return self.score_kernel.forward(train_scores, train_scores), None
        key = (self._latent_key(like), *_data_key(self.train_scores), *_values_key(self.score_kernel.parameters()))
        if self._score_cache is not None and self._score_cache[0] == key:
            return self._score_cache[1]
        train_scores = self.train_scores.to(like)
        score_cov = self.score_kernel.forward(train_scores, train_scores)
        parts = (score_cov, score_cov @ self._latent_parts(like)[2])
        self._score_cache = (key, parts)
        return parts

    def training_parts(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(Cholesky factor of K_ZZ + eps I, K_S): the parts of the kernel that depend only on the training data.

        Cached without autograd, keyed on the hyperparameters (see ``_latent_key``).
        """
        return self._latent_parts(like)[1], self._score_parts(like)[0]

    def is_training_set(self, x: Tensor) -> bool:
        """Whether ``x`` is the training points Z (possibly broadcast over batch dimensions).

        Only asked where the answer can be used (see ``_latent_key``): gpytorch computes every posterior's test/train
        covariance as kernel(X, Z expanded to X's batch), and with a batch of b points, recomputing W(Z) for each of
        them cost b solves with n right-hand sides (the top item of the BO step's profile); W(Z) and K_S W(Z) are
        the same for all of them.
        """
        train_z = self.train_z
        return x.shape[-2:] == train_z.shape and torch.equal(x, train_z.to(x).expand_as(x))

    def latent_weights(self, x: Tensor, cross: Tensor | None = None) -> Tensor:
        """W(x) = (K_ZZ + eps I)^-1 k_z(Z, x), shape (*batch, n, len(x)), by a Cholesky solve (no inverse is ever
        formed); W(Z) comes from the cache when it can. ``cross``: k_z(Z, x) if the caller already has it.

        Inside ``flat_batches`` a batch is solved as one (n x everything) right-hand side: a batched
        ``cholesky_solve`` first copies the factor once per batch member (a posterior call on 250 single points
        spent ~30x longer copying than solving).
        """
        if self._latent_key(x) is not None and self.is_training_set(x):
            return self._latent_parts(x)[2].expand(*x.shape[:-2], -1, -1)
        factor = self._latent_parts(x)[1]
        cross = self.latent_cross(x) if cross is None else cross
        if cross.ndim == 2 or not _flat_batches_on():
            return torch.cholesky_solve(cross, factor)
        batch, (n, k) = cross.shape[:-2], cross.shape[-2:]
        flat = cross.movedim(-2, 0).reshape(n, -1)  # (n, batch * k): column j is batch member j // k, point j % k
        return torch.cholesky_solve(flat, factor).reshape(n, *batch, k).movedim(0, -2)

    def latent_cross(self, x: Tensor) -> Tensor:
        """k_z(Z, x), shape (*batch, n, len(x)); k_z(Z, Z) comes from the cache when it can.

        Inside ``flat_batches`` a batch is one (n x everything) kernel matrix instead of one per batch member, each
        against its own copy of Z (~20x faster for 250 points and n = 150).
        """
        if self._latent_key(x) is not None and self.is_training_set(x):
            return self._latent_parts(x)[0].expand(*x.shape[:-2], -1, -1)
        train_z = self.train_z.to(x)
        if x.ndim == 2 or not _flat_batches_on():
            return self.latent_kernel.forward(train_z.expand(*x.shape[:-2], *train_z.shape), x)
        batch, k = x.shape[:-2], x.shape[-2]
        flat = self.latent_kernel.forward(train_z, x.reshape(-1, x.shape[-1]))  # (n, batch * k)
        return flat.reshape(-1, *batch, k).movedim(0, -2)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params: object
    ) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("InstructionCoupledKernel does not support last_dim_is_batch")
        score_cov, projected_train = self._score_parts(x1)

        same = x1.shape == x2.shape and torch.equal(x1, x2)
        w1 = self.latent_weights(x1)
        if not same and not diag and projected_train is not None and self.is_training_set(x2):
            # The test/train block of a posterior call: K_S W(Z) is cached, so this is one (n1 x n) product per
            # batch member instead of a solve and a product with n right-hand sides each. Expanded (not a plain
            # 2-d operand, which matmul would fold into one big product) it is the same bmm as before, bit for bit.
            return w1.transpose(-2, -1) @ projected_train.expand(*x2.shape[:-2], -1, -1)
        w2 = w1 if same else self.latent_weights(x2)
        projected = score_cov @ w2  # (*batch, n, n2)
        if diag:
            # Only the diagonal: sum_j W1[j, i] * (K_S W2)[j, i], without forming the n1 x n2 matrix.
            return (w1 * projected).sum(dim=-2)
        covar = w1.transpose(-2, -1) @ projected
        if same:
            # Exact symmetry (rounding can break it by ~1e-16); downstream Cholesky factorisations like that better.
            covar = 0.5 * (covar + covar.transpose(-2, -1))
        return covar


class LatentResidualKernel(Kernel):
    """r(z1, z2) = variance * [k_z(z1, z2) - k_z(z1, Z) (K_ZZ + eps I)^-1 k_z(Z, z2)].

    The part of the latent kernel k_z that the training points do not span (the posterior covariance of a GP with
    kernel k_z after seeing Z with noise eps), sharing ``coupled``'s latent kernel, training points and eps.

    Why: the coupled kernel has rank <= n, so a GP built on it alone is nearly certain everywhere once it has seen the
    training data, and expected improvement degenerates into pure exploitation of the mean. Adding r leaves the
    coupled kernel untouched near the data (r is ~eps there, so neither the fit nor the posterior mean changes) and
    gives back k_z's prior variance away from it, which is what lets EI explore.

    ``variance`` is fixed, not learned: the training data cannot identify it (r vanishes on them). In standardised-y
    units 1.0 says "away from the data, expect the spread of the scores seen so far".
    """

    has_lengthscale = False

    def __init__(self, coupled: InstructionCoupledKernel, *, variance: float = 1.0, **kwargs: object) -> None:
        if variance < 0:
            raise ValueError("variance must be >= 0")
        super().__init__(**kwargs)
        self.coupled = coupled
        self.variance = float(variance)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params: object
    ) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("LatentResidualKernel does not support last_dim_is_batch")
        coupled = self.coupled
        same = x1.shape == x2.shape and torch.equal(x1, x2)
        # latent_cross and latent_weights take k_z(Z, Z) and W(Z) from the coupled kernel's cache when x is Z.
        cross1 = coupled.latent_cross(x1)
        cross2 = cross1 if same else coupled.latent_cross(x2)
        w1 = coupled.latent_weights(x1, cross1)
        if diag:
            covar = coupled.latent_kernel.forward(x1, x2, diag=True) - (w1 * cross2).sum(dim=-2)
            return self.variance * covar.clamp_min(0.0)
        if not same and _flat_batches_on() and coupled.is_training_set(x2):
            prior = cross1.transpose(-2, -1)  # k_z(x1, Z) is k_z(Z, x1) transposed: no second batched kernel call
        else:
            prior = coupled.latent_kernel.forward(x1, x2)
        covar = prior - w1.transpose(-2, -1) @ cross2
        if same:
            covar = 0.5 * (covar + covar.transpose(-2, -1))
        return self.variance * covar
