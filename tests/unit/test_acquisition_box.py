"""CMA-ES in the box [-1, 1]^d: our population-at-once transformation is pycma's bound handling, bit for bit.

``engine.bo.acquisition`` runs pycma without ``bounds`` and maps each population into the box itself (one numpy
pass for every run instead of pycma's per-solution call, a third of the acquisition's time). That is only a speed
change if pycma with ``bounds`` would have asked, evaluated and updated exactly the same points: checked here
against pycma itself, so a pycma release that changes its bound handling fails this test instead of silently
moving the BO's proposals.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from engine.bo.acquisition import _Box

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # cma warns that matplotlib is absent
    import cma
    from cma.transformations import BoxConstraintsLinQuadTransformation


@pytest.mark.parametrize("d", [1, 3, 10])
def test_the_box_maps_a_population_as_pycma_maps_each_solution(d: int) -> None:
    rng = np.random.default_rng(d)
    genotypes = np.concatenate([
        rng.uniform(-1.0, 1.0, (50, d)),  # inside: identity but for the margins
        rng.uniform(-1.2, 1.2, (50, d)),  # the quadratic margins and the mirror
        rng.normal(0.0, 20.0, (50, d)),  # far out: shifted by whole periods
        np.full((1, d), 1.1), np.full((1, d), -1.1), np.full((1, d), 0.9), np.zeros((1, d)),
    ])
    tf = BoxConstraintsLinQuadTransformation([[-1.0, 1.0]])
    expected = np.stack([tf(row.copy()) for row in genotypes])
    got = _Box(d)(genotypes)
    assert np.array_equal(got, expected)
    assert (got >= -1.0).all() and (got <= 1.0).all()
    assert not np.array_equal(got, genotypes)  # the test data do reach the margins


def test_unbounded_cma_with_the_box_follows_the_same_path_as_cma_with_bounds() -> None:
    d, target = 10, np.linspace(-1.0, 1.0, 10)  # the optimum on the box's edges: the margins matter
    box = _Box(d)
    x0 = np.array([0.95, -1.0, 1.0, 0.0, 0.5, -0.93, 0.2, 0.99, -0.5, 0.91])

    def f(x: np.ndarray) -> float:
        return float(((x - target) ** 2).sum())

    bounded = cma.CMAEvolutionStrategy(x0.tolist(), 0.5, {"bounds": [-1.0, 1.0], "verbose": -9, "seed": 7,
                                                          "maxiter": 30, "tolfun": 1e-9})
    ours = cma.CMAEvolutionStrategy(box.inverse(torch.tensor(x0)), 0.5,
                                    {"verbose": -9, "seed": 7, "maxiter": 30, "tolfun": 1e-9,
                                     "maxstd": box.maxstd})
    state = np.random.get_state()
    try:
        steps = 0
        while not bounded.stop():
            np.random.seed(1000 + steps)  # both sample from the same stream at each step
            asked_bounded = bounded.ask()
            np.random.seed(1000 + steps)
            asked = ours.ask()
            pheno = box(np.asarray(asked))
            assert np.array_equal(np.asarray(asked_bounded), pheno), steps
            bounded.tell(asked_bounded, [f(x) for x in asked_bounded])
            ours.tell(asked, [f(x) for x in pheno])
            steps += 1
        assert ours.stop() and steps >= 10
        assert np.array_equal(bounded.mean, ours.mean) and bounded.sigma == ours.sigma
    finally:
        np.random.set_state(state)
