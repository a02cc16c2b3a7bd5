"""``surrogate = "graded"``: the BO's model learns from each dev answer's metric score or, when higher, its word
overlap (F1) with a right answer. With exact match, a run whose first candidates all score 0 gives the plain
surrogate a constant y (nothing to model, Sobol points instead); graded, it still says which came closer.

Checked on the real runner and BO step (a spy on ``bo.propose`` records what the model is given), against the
fake endpoint of test_racing (near-miss sentences under "Close..." instructions, wrong answers otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config import RunSettings
from engine.methods import METHODS
from tests.unit.unit_fakes import FakeEndpoint, FakeGenerator, bo_inputs, engine_with_fakes, run_to_end

pytestmark = pytest.mark.usefixtures("no_real_generator")


def _first_step(graded: FakeEndpoint, tmp_path: Path, surrogate: str) -> tuple[Any, Any, dict[str, Any]]:
    engine = engine_with_fakes(graded, tmp_path, FakeGenerator(["Close one.", "Bad one.", "Bad two.", "Close two."]))
    engine.methods = METHODS  # the real BO step
    settings = RunSettings(method="instructzero", intrinsic_dim=2, n_soft_tokens=1, n_dev=4, n_test=0, n_demos=2,
                           n_init=3, batch_size=1, n_iterations=1, surrogate=surrogate, race=False)
    with bo_inputs() as seen:
        summary = run_to_end(engine, "larger_animal", settings, [])
    assert summary["status"] == "finished" and len(seen) == 1
    return seen[0][0], seen[0][1], summary


def test_graded_gives_the_model_the_near_misses(graded: FakeEndpoint, tmp_path: Path) -> None:
    S, y, summary = _first_step(graded, tmp_path, "graded")
    assert summary["dev_score"] == 0.0  # exact match: every candidate is wrong...
    assert y[0] > 0.5 and y[1] == 0.0 == y[2]  # ...but "Close one." came close, and the model is told
    assert S.shape == (3, 4) and bool((S[0] > 0.5).all()) and float(S[1:].abs().sum()) == 0.0


def test_the_default_surrogate_sees_only_the_metric(graded: FakeEndpoint, tmp_path: Path) -> None:
    S, y, _ = _first_step(graded, tmp_path, "score")
    assert float(y.abs().sum()) == 0.0 and float(S.abs().sum()) == 0.0
