"""The headless core with fakes: run settings have one home, and calls/tokens are counted in one place.

Why: every front end (TUI, CLI, benchmarks) reads a run's settings and its cost from the engine. These tests pin
the single sources — ``RunSettings.with_overrides`` (the merge), ``engine.config.revive`` (a stored run as objects
again) and ``Usage`` (what answers cost) — and check on the wire (a loopback fake endpoint that counts requests) that
the counters the engine streams, stores and summarises are the same numbers. No model is loaded; each test takes a
fraction of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes, run_to_end

from engine.config import RunSettings, revive
from engine.errors import ConfigError
from engine.generator_setup import default_prompt_style
from engine.methods import METHOD_HELP, METHODS
from engine.runner import Engine
from engine.usage import Usage
from engine.wire.events import CandidateScored, Event, RunFinished

TASK = "larger_animal"
SMALL = {"intrinsic_dim": 2, "n_soft_tokens": 1, "n_dev": 2, "n_test": 3, "n_demos": 2}


pytestmark = pytest.mark.usefixtures("no_real_generator")


def _run(engine: Engine, settings: Any, events: list[Event], **kw: Any) -> dict[str, Any]:
    return run_to_end(engine, TASK, settings, events, **kw)


# -- one home for run settings ------------------------------------------------------------------------------
def test_methods_come_from_the_registry_with_their_declarations() -> None:
    from engine.errors import IZError
    from engine.methods import get

    assert tuple(METHODS) == ("instructzero", "random", "ape", "ape_local", "opro", "instinct", "manual")
    assert set(METHOD_HELP) == set(METHODS), "every method has its one line of help"
    for m in METHODS:
        assert RunSettings(method=m).method == m
    needs_gen = {m for m, x in METHODS.items() if x.needs_generator}
    assert needs_gen == {"instructzero", "random", "ape_local", "instinct"}
    assert {m for m, x in METHODS.items() if x.pays_for_proposals} == {"ape", "opro"}
    assert {m for m, x in METHODS.items() if x.takes_instructions} == {"manual"}
    s = RunSettings(budget_evaluations=7)
    assert get("manual").budget(s, 3) == 3 and get("opro").budget(s, 3) == 7
    with pytest.raises(IZError, match="use one of instructzero, random"):
        get("grid")
    with pytest.raises(ValueError):
        RunSettings(method="Grid search!")  # not a method name at all


def test_overrides_merge_over_the_configured_defaults() -> None:
    defaults = RunSettings(n_dev=7, n_test=11, seed=4)
    merged = defaults.with_overrides({"n_dev": 3, "method": "random"})
    assert (merged.n_dev, merged.n_test, merged.seed, merged.method) == (3, 11, 4, "random")
    assert defaults.with_overrides(None) is defaults and defaults.n_dev == 7
    with pytest.raises(ConfigError) as err:
        defaults.with_overrides({"n_dev": 0, "colour": "red"})
    assert "n_dev" in err.value.problem and "colour" in err.value.problem


@pytest.mark.parametrize(("evaluations", "n_init", "batch", "iterations"),
                         [(10, 5, 5, 1), (11, 5, 5, 2), (5, 5, 5, 0), (3, 5, 5, 0), (150, 25, 25, 5)])
def test_iterations_for_a_budget(evaluations: int, n_init: int, batch: int, iterations: int) -> None:
    assert RunSettings.iterations_for(evaluations, n_init, batch) == iterations
    if iterations:  # just enough iterations: one fewer would not spend the budget
        assert n_init + iterations * batch >= evaluations > n_init + (iterations - 1) * batch


def test_a_created_run_revives_to_the_same_settings(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = engine_with_fakes(fake, tmp_path)
    run_id = engine.create_run(TASK, {"method": "manual", "n_dev": 3, **SMALL}, instructions=["A.", "B."])
    stored = revive(engine.history.run(run_id))
    # "auto" is recorded as the style the generator model asks in, so a resume or --like asks alike
    style = default_prompt_style(engine.config.generator)
    assert style in ("paper", "direct") and stored.settings.prompt_style == style
    assert stored.settings == engine.config.run.with_overrides({"method": "manual", "n_dev": 3, **SMALL,
                                                                "prompt_style": style})
    assert stored.instructions == ["A.", "B."]
    assert stored.endpoint_name == "fake" and stored.profile == engine.config.endpoints["fake"]


# -- one place for counting ---------------------------------------------------------------------------------
def test_usage_counts_answers_dicts_and_objects_alike() -> None:
    class Answer:
        def __init__(self, hit: bool) -> None:
            self.cache_hit, self.prompt_tokens, self.completion_tokens = hit, 10, 2

    dicts = [{"cache_hit": False, "prompt_tokens": 10, "completion_tokens": 2},
             {"cache_hit": True, "prompt_tokens": 10, "completion_tokens": 2}]
    # tokens: what the answers cost once (cached or not); paid tokens: only the answer that went over the network
    assert Usage.of_answers(dicts) == Usage.of_answers([Answer(False), Answer(True)]) == Usage(1, 1, 20, 4, 10, 2)
    assert Usage.reused(5) == Usage(calls_saved=5) and Usage.reused(5).tokens == 0
    assert Usage(1, 2, 3, 4) + Usage(1, 1, 1, 1) == Usage(2, 3, 4, 5)
    assert Usage.of_row({"calls": 3, "calls_saved": None, "prompt_tokens": 7}) == Usage(3, 0, 7, 0)


def test_streamed_stored_and_summarised_counts_agree(fake: FakeEndpoint, tmp_path: Path) -> None:
    """The numbers a front end shows come from one counter: the last scored event plus the test scoring equal the
    finished summary, the run row and the candidates' own columns, and the fake endpoint saw exactly that many."""
    gen = FakeGenerator(["Name the bigger one.", "Name the bigger one.", "Pick the heavier."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    events: list[Event] = []
    settings = RunSettings(**SMALL, n_init=3, batch_size=3, budget_evaluations=2)
    summary = _run(engine, settings, events)

    n_dev, n_test = settings.n_dev, settings.n_test
    assert summary["calls"] == len(fake.requests) == 2 * n_dev + n_test
    assert summary["calls_saved"] == n_dev  # the repeat reused the first score
    last = [e for e in events if isinstance(e, CandidateScored)][-1]
    assert (last.calls, last.calls_saved) == (summary["calls"] - n_test, summary["calls_saved"])
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].summary["calls"] == summary["calls"]
    row = engine.history.run(summary["run_id"])
    per_candidate = sum((Usage.of_row(c) for c in engine.history.candidates(summary["run_id"])), Usage())
    assert per_candidate.calls == summary["calls"] - n_test and per_candidate.calls_saved == summary["calls_saved"]
    assert Usage.of_row(row).tokens == summary["tokens"] > 0


def test_a_repeated_run_is_answered_by_the_cache(fake: FakeEndpoint, tmp_path: Path) -> None:
    """The same instructions on the same examples cost nothing the second time: every call is counted as saved."""
    engine = engine_with_fakes(fake, tmp_path)
    settings = RunSettings(**SMALL, method="manual")
    first = _run(engine, settings, [], instructions=["Name the bigger one.", "Pick the heavier."])
    sent = len(fake.requests)
    second = _run(engine, settings, [], instructions=["Name the bigger one.", "Pick the heavier."])
    assert len(fake.requests) == sent, "nothing paid twice"
    assert second["calls"] == 0
    assert second["calls_saved"] == first["calls"] + first["calls_saved"]
    assert second["tokens"] == first["tokens"], "tokens say what the answers cost once, cached or not"


def test_a_calls_budget_stops_the_run_cleanly(fake: FakeEndpoint, tmp_path: Path) -> None:
    gen = FakeGenerator(["One.", "Two.", "Three.", "Four."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    settings = RunSettings(**SMALL, n_init=4, batch_size=4, budget_evaluations=4, budget_calls=3)
    summary = _run(engine, settings, [])
    assert summary["status"] == "stopped" and summary["stop_reason"] == "calls"
    # Checked before each evaluation: the run stops at the first evaluation that starts at or past the cap.
    assert summary["calls"] == len(fake.requests) == 2 * settings.n_dev
    assert summary["test_score"] is None, "a money cap does not spend more on the test split"
    assert [c["status"] for c in engine.history.candidates(summary["run_id"])] == ["scored"] * 2 + ["proposed"] * 2
