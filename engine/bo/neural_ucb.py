"""NeuralUCB over instruction representations: INSTINCT's surrogate (Lin et al., ICML 2024), on our pools.

Why a neural bandit and not the GP of engine/bo: the candidates here are points of a fixed pool, each represented
by a vector of the generator's hidden states (hundreds to thousands of dimensions), and what is learnt is which
regions of *that* space score well. A small MLP fits such a space with few points, and the UCB exploration term
comes from its gradients (how much the network's output at a point could still move), as in NeuralUCB with the
diagonal approximation of the design matrix.

Shapes: ``X_train`` (n, d) representations of the scored candidates, ``y`` (n,) their dev scores in [0, 1],
``X_pool`` (m, d) the representations of the candidates that may be chosen. Deviations from INSTINCT's code, each for
a reason: features are standardised with the *pool's* mean and spread (the training set has 4-10 points here, too
few to estimate a per-dimension spread from); the network starts from PyTorch's default initialisation (N(0, 1)
weights on 1,000+ standardised inputs saturate it); a batch is picked greedily, each pick adding its gradient to the
design before the next (the "hallucinated" update INSTINCT makes before a reward is known).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: INSTINCT's settings: width 100, one hidden layer, lambda 0.1, nu 1 (inside the square root), Adam at 1e-3.
WIDTH = 100
LAMBDA = 0.1
NU = 1.0
LR = 1e-3
STEPS = 1000


def _standardise(X_train: Tensor, X_pool: Tensor) -> tuple[Tensor, Tensor]:
    both = torch.cat([X_train, X_pool])
    mean, std = both.mean(0), both.std(0).clamp_min(1e-8)
    return (X_train - mean) / std, (X_pool - mean) / std


def _fit(X: Tensor, y: Tensor, steps: int) -> nn.Module:
    """The MLP fitted by full-batch Adam on the squared error, weight decay lambda / n (a ridge prior)."""
    net = nn.Sequential(nn.Linear(X.shape[1], WIDTH), nn.ReLU(), nn.Linear(WIDTH, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=LAMBDA / max(len(y), 1))
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(X).squeeze(-1) - y) ** 2).sum()
        loss.backward()
        opt.step()
    return net


def _gradients(net: nn.Module, X: Tensor) -> Tensor:
    """(m, p): the gradient of the network's output at each point with respect to all its parameters."""
    params = [p for p in net.parameters()]
    rows = []
    for x in X:
        net.zero_grad()
        net(x.unsqueeze(0)).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in params]).clone())  # type: ignore[union-attr]
    return torch.stack(rows)


def select(X_train: Tensor, y: Tensor, X_pool: Tensor, k: int, *, seed: int, steps: int = STEPS) -> list[int]:
    """Indices of ``k`` distinct pool points to evaluate next, by the upper confidence bound mean + sigma.

    Deterministic for ``seed`` (the network's initialisation); the caller's RNG state is left alone."""
    if k < 1 or len(X_pool) == 0:
        return []
    if len(X_train) == 0:
        raise ValueError("NeuralUCB needs at least one scored point")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        Xt, Xp = _standardise(X_train.double(), X_pool.double())
        net = _fit(Xt, y.double(), steps)
        with torch.no_grad():
            mean = net(Xp).squeeze(-1)
        G_pool = _gradients(net, Xp)
        design = LAMBDA + (_gradients(net, Xt) ** 2).sum(0)  # the diagonal of lambda I + sum g g^T
    picked: list[int] = []
    for _ in range(min(k, len(X_pool))):
        sigma = torch.sqrt((LAMBDA * NU * G_pool**2 / design).sum(1))
        ucb = mean + sigma
        if picked:
            ucb[picked] = -torch.inf
        best = int(torch.argmax(ucb))
        picked.append(best)
        design = design + G_pool[best] ** 2
    return picked
