"""instinct (engine/methods/instinct.py, engine/bo/neural_ucb.py): the pool is decoded once and cached, its
distinct texts are the candidates, and the neural bandit prefers what scored well while it still explores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes, run_to_end  # noqa: F401

from engine.bo.neural_ucb import select
from engine.config import RunSettings
from engine.methods import METHODS
from engine.methods.instinct import pool_size
from engine.wire.events import Status

pytestmark = pytest.mark.usefixtures("no_real_generator")


def _cluster(center: float, n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return center + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_the_bandit_picks_near_what_scored_well_and_is_deterministic() -> None:
    good, bad = _cluster(1.0, 3, seed=1), _cluster(-1.0, 3, seed=2)
    X_train = torch.cat([good, bad])
    y = torch.tensor([0.9, 0.8, 1.0, 0.0, 0.1, 0.0], dtype=torch.float64)
    pool = torch.cat([_cluster(-1.0, 4, seed=3), _cluster(1.0, 4, seed=4)])  # indices 4..7 are the good ones
    first = select(X_train, y, pool, 3, seed=5, steps=300)
    assert len(set(first)) == 3 and first[0] >= 4
    assert select(X_train, y, pool, 3, seed=5, steps=300) == first  # seeded
    with pytest.raises(ValueError):
        select(X_train[:0], y[:0], pool, 1, seed=0)
    assert select(X_train, y, pool[:0], 2, seed=0) == []


def test_exploration_prefers_the_unknown_when_the_scores_say_nothing() -> None:
    X_train = _cluster(0.0, 4, seed=1)
    y = torch.full((4,), 0.5, dtype=torch.float64)  # all alike: the mean is flat, only sigma can decide
    pool = torch.cat([X_train[:2], _cluster(3.0, 1, seed=9)])
    assert select(X_train, y, pool, 1, seed=0, steps=300) == [2]


def test_pool_size_scales_with_the_budget() -> None:
    assert pool_size(RunSettings(budget_evaluations=10)) == 30
    assert pool_size(RunSettings(budget_evaluations=150)) == 200
    assert pool_size(RunSettings(budget_evaluations=10, pool_size=50)) == 50
    assert METHODS["instinct"].soft_prompts and METHODS["instinct"].needs_generator


SCRIPT = [f"Write the {w} one." for w in ("larger", "smaller", "louder", "older", "heavier", "larger")] + \
         [f"Say {w}." for w in ("banana", "apple", "cherry")] + ["Name the bigger animal."] * 10


def test_an_instinct_run_decodes_its_pool_once_and_proposes_distinct_pool_texts(fake: FakeEndpoint,
                                                                                  tmp_path: Path) -> None:
    settings = RunSettings(method="instinct", n_init=3, batch_size=2, budget_evaluations=7, n_dev=2, n_test=2,
                           n_demos=2, pool_size=20, intrinsic_dim=4, race=False)
    gen = FakeGenerator(list(SCRIPT))
    engine = engine_with_fakes(fake, tmp_path, gen)
    events: list[Any] = []
    summary = run_to_end(engine, "larger_animal", settings, events)
    assert summary["status"] == "finished"
    assert gen.asked == [10, 10]  # the pool, in chunks, once: no soft prompt is decoded afterwards
    cands = engine.history.candidates(summary["run_id"])
    texts = [c["instruction"] for c in cands]
    distinct = list(dict.fromkeys(t for t in SCRIPT))
    assert len(texts) == len(set(texts)) == summary["evaluations"] == 7  # distinct texts of the pool only
    assert set(texts) <= set(distinct)
    assert all(c["z"] is not None and len(c["z"]) == 4 for c in cands)
    assert gen.embedded == len(distinct)
    assert any("decoding the pool" in e.message for e in events if isinstance(e, Status))

    # The same run again: the pool comes from the cache (nothing decoded), the candidates are the same.
    gen2 = FakeGenerator(["Never used."])
    engine2 = engine_with_fakes(fake, tmp_path, gen2)
    again = run_to_end(engine2, "larger_animal", settings, [])
    assert gen2.asked == [] and [c["instruction"] for c in engine2.history.candidates(again["run_id"])] == texts


def test_a_pool_with_fewer_texts_than_the_budget_ends_the_run_early(fake: FakeEndpoint, tmp_path: Path) -> None:
    settings = RunSettings(method="instinct", n_init=2, batch_size=2, budget_evaluations=8, n_dev=2, n_test=2,
                           n_demos=2, pool_size=6, intrinsic_dim=4, race=False)
    gen = FakeGenerator(["One.", "Two.", "Three.", "Two.", "One.", "Three."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    summary = run_to_end(engine, "larger_animal", settings, [])
    assert summary["status"] == "finished" and summary["evaluations"] == 3


def test_a_pool_of_repeats_is_topped_up_by_sampling(fake: FakeEndpoint, tmp_path: Path) -> None:
    """Greedy decoding writes one text for every soft prompt here (as the 1.5B generator did for most of them in the
    benchmark); the repeats are decoded again by seeded sampling until the pool holds twice the budget."""
    settings = RunSettings(method="instinct", n_init=2, batch_size=2, budget_evaluations=4, n_dev=2, n_test=2,
                           n_demos=2, pool_size=10, intrinsic_dim=4, race=False)
    gen = FakeGenerator(["One."] * 10, resamples=["Two.", "Three.", "Four.", "Five.", "Six.", "Seven.", "Eight."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    summary = run_to_end(engine, "larger_animal", settings, [])
    assert summary["status"] == "finished" and summary["evaluations"] == 4
    assert gen.asked == [10] and gen.sampled and {t for _, t, _ in gen.sampled} == {settings.resample_temperature}
    cands = engine.history.candidates(summary["run_id"])
    assert len({c["instruction"] for c in cands}) == 4
    assert "sampled" in {c["decoding"] for c in cands}
    assert gen.embedded == 8  # "One." and seven sampled texts: 2 x the budget reached
