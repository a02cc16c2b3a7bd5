"""The runner's budget rule (engine/runner.py): only a NEW instruction costs an evaluation.

A repeated instruction is still stored as a candidate (the proposer wrote it, and that is information), but with
``duplicate_of`` pointing at the first candidate that had the same text; it reuses that score, makes no black-box
call and is counted in ``evaluations_saved``. Because repeats are free, a proposer that keeps writing the same
few instructions would never spend its budget; the run then stops after ``RunState.max_candidates`` proposals
with stop reason ``no_new_instructions`` (a normal end: status ``finished``, the best is still scored on test).

Why these tests: the rule decides what a run costs (the budget a user set is in evaluations) and what it is
allowed to pay for, so they check it on the wire: a fake OpenAI-compatible endpoint (a stdlib HTTP server on
127.0.0.1) records every request, and a scripted fake generator stands in for the local model, so no model is
loaded and every test runs in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes, run_to_end

from engine.config import RunSettings
from engine.run_state import RunState
from engine.runner import Engine
from engine.wire.events import CandidateScored, Event, RunFinished

TASK = "larger_animal"


pytestmark = pytest.mark.usefixtures("no_real_generator")


def _engine(fake: FakeEndpoint, tmp_path: Path, generator: FakeGenerator | None = None) -> Engine:
    return engine_with_fakes(fake, tmp_path, generator)


def _settings(**kw: Any) -> RunSettings:
    base: dict[str, Any] = {"intrinsic_dim": 2, "n_soft_tokens": 1, "n_dev": 2, "n_test": 3, "n_demos": 2}
    return RunSettings(**{**base, **kw})


def _run(engine: Engine, settings: Any, events: list[Event], **kw: Any) -> dict[str, Any]:
    return run_to_end(engine, TASK, settings, events, **kw)


def _check_duplicates_point_at_their_first(cands: list[dict[str, Any]], paid_or_cached: bool = False) -> None:
    by_id = {c["id"]: c for c in cands}
    first: dict[str, int] = {}
    for c in sorted(cands, key=lambda c: c["position"]):
        assert c["status"] == "scored"
        if c["instruction"] in first:
            assert c["duplicate_of"] == first[c["instruction"]]
            original = by_id[c["duplicate_of"]]
            assert original["instruction"] == c["instruction"] and original["duplicate_of"] is None
            assert c["dev_score"] == original["dev_score"] and c["scores"] == original["scores"]
            assert c["calls"] == 0 and c["cache_hit"] == 1
        else:
            assert c["duplicate_of"] is None
            assert c["calls"] + (c["calls_saved"] if paid_or_cached else 0) == 2  # n_dev paid calls
            first[c["instruction"]] = c["id"]


def test_max_candidates_is_three_budgets_or_budget_plus_twenty() -> None:
    def cap(budget: int) -> int:
        return RunState(1, None, None, None, "x", None, [], budget).max_candidates  # type: ignore[arg-type]

    assert [cap(b) for b in (1, 5, 10, 11, 50)] == [21, 25, 30, 33, 150]


@pytest.mark.parametrize("method", ["random", "instructzero"])
def test_only_new_instructions_cost_an_evaluation(fake: FakeEndpoint, tmp_path: Path, method: str) -> None:
    script = ["Name the bigger one.", "Pick the heavier.", "Name the bigger one.",  # batch 1: 3 asked
              "Pick the heavier.", "Say the larger animal.",                       # batch 2: room 2
              "Say the larger animal.",                                            # batch 3: room 1, a repeat
              "Answer with the giant."]                                            # batch 4: room 1, new
    gen = FakeGenerator(script)
    engine = _engine(fake, tmp_path, gen)
    events: list[Event] = []
    settings = _settings(method=method, n_init=3, batch_size=3, budget_evaluations=4)
    summary = _run(engine, settings, events)

    assert summary["status"] == "finished" and summary["stop_reason"] == "evaluations"
    assert summary["evaluations"] == 4 and summary["evaluations_saved"] == 3
    # A repeat leaves the room for new instructions as it was: the next batch asks for just as many.
    assert gen.asked == [3, 2, 1, 1] and gen.script == ["Answer with the giant."]
    cands = engine.history.candidates(summary["run_id"])
    assert len(cands) == summary["evaluations"] + summary["evaluations_saved"] == 7
    assert [c["instruction"] for c in cands] == script
    assert all(c["z"] is not None for c in cands)
    _check_duplicates_point_at_their_first(cands)

    distinct = sorted(set(script))
    n_dev, n_test = settings.n_dev, settings.n_test
    assert len(fake.requests) == len(distinct) * n_dev + n_test == summary["calls"]
    best = summary["best_instruction"]
    assert best in distinct and summary["test_score"] is not None
    for text in distinct:  # each instruction paid once on dev, never again; the best once more on test
        assert fake.asking(text) == n_dev + (n_test if text == best else 0)
    assert summary["calls_saved"] == 3 * n_dev

    scored = [e for e in events if isinstance(e, CandidateScored)]
    assert [e.evaluations for e in scored] == [1, 2, 2, 2, 3, 3, 4]
    assert [e.duplicate_of is not None for e in scored] == [False, False, True, True, False, True, False]
    assert all(e.cache_hit for e in scored if e.duplicate_of is not None)
    assert not any(e.cache_hit for e in scored if e.duplicate_of is None)


def test_a_proposer_that_only_repeats_stops_at_max_candidates(fake: FakeEndpoint, tmp_path: Path) -> None:
    gen = FakeGenerator(["Always the same."])
    engine = _engine(fake, tmp_path, gen)
    events: list[Event] = []
    settings = _settings(method="random", n_init=3, batch_size=2, budget_evaluations=3)
    cap = max(3 * 3, 3 + 20)  # 23 = 3 + 10 batches of 2, so the cap falls between two batches
    summary = _run(engine, settings, events)

    assert summary["status"] == "finished"
    assert summary["stop_reason"] == "no_new_instructions"
    assert engine.history.run(summary["run_id"])["stop_reason"] == "no_new_instructions"
    done = [e for e in events if isinstance(e, RunFinished)]
    assert len(done) == 1 and done[0].status == "finished" and done[0].stop_reason == "no_new_instructions"

    assert summary["evaluations"] == 1 and summary["evaluations_saved"] == cap - 1
    cands = engine.history.candidates(summary["run_id"])
    assert len(cands) == cap
    _check_duplicates_point_at_their_first(cands)
    assert sum(gen.asked) == cap and gen.asked[0] == 3 and set(gen.asked[1:]) == {2}
    # One instruction paid once on dev, and once more on test (a normal finish still scores the best).
    assert len(fake.requests) == settings.n_dev + settings.n_test == summary["calls"]
    assert summary["test_score"] is not None and summary["best_instruction"] == "Always the same."


def test_the_cap_is_checked_between_batches(fake: FakeEndpoint, tmp_path: Path) -> None:
    """With a batch that does not divide the cap, the last batch may pass it, by less than one batch."""
    gen = FakeGenerator(["Always the same."])
    engine = _engine(fake, tmp_path, gen)
    settings = _settings(method="random", n_init=5, batch_size=3, budget_evaluations=5)
    summary = _run(engine, settings, [])
    cap = 25
    n = len(engine.history.candidates(summary["run_id"]))
    assert summary["stop_reason"] == "no_new_instructions" and summary["evaluations"] == 1
    assert cap <= n < cap + settings.batch_size
    assert summary["evaluations_saved"] == n - 1


def test_manual_repeats_are_free(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = _engine(fake, tmp_path)
    settings = _settings(method="manual")
    summary = _run(engine, settings, [], instructions=["A.", "B.", "A."])

    assert summary["status"] == "finished"
    assert summary["evaluations"] == 2 and summary["evaluations_saved"] == 1
    cands = engine.history.candidates(summary["run_id"])
    assert [c["instruction"] for c in cands] == ["A.", "B.", "A."]
    assert all(c["z"] is None for c in cands)
    _check_duplicates_point_at_their_first(cands)
    assert cands[2]["duplicate_of"] == cands[0]["id"]
    assert len(fake.requests) == 2 * settings.n_dev + settings.n_test == summary["calls"]
    assert not engine.status()["generator_loaded"]  # manual never needs the local model


def test_resume_rebuilds_the_counters_from_the_store(fake: FakeEndpoint, tmp_path: Path) -> None:
    """Cancelled after a repeat was recorded, then resumed: the same totals as one uninterrupted run, and
    nothing paid twice (the resumed engine rebuilds evaluations / evaluations_saved from duplicate_of)."""
    script = ["One.", "One.", "Two.", "Two.", "Three."]
    gen = FakeGenerator(script)
    engine = _engine(fake, tmp_path, gen)
    settings = _settings(method="random", n_init=3, batch_size=3, budget_evaluations=3)

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            run_id = engine.create_run(TASK, settings)
            cancel = asyncio.Event()

            def on(ev: Event) -> None:
                if isinstance(ev, CandidateScored) and ev.duplicate_of is not None:
                    cancel.set()  # stop right after the first repeat: "One.", "One." scored, "Two." not yet

            first = await engine.execute(run_id, emit=on, cancel=cancel)
            return first, await engine.resume(run_id)
        finally:
            await engine.aclose()

    first, summary = asyncio.run(go())
    assert first["status"] == "cancelled" and first["evaluations"] == 1 and first["evaluations_saved"] == 1
    assert summary["status"] == "finished"
    assert summary["evaluations"] == 3 and summary["evaluations_saved"] == 2
    cands = engine.history.candidates(summary["run_id"])
    assert [c["instruction"] for c in cands] == script
    # "Two." was being scored beside "One." when the stop came: what it had been answered is in the cache, so
    # after the resume it may cost nothing itself; every request the endpoint saw is counted once in the run.
    _check_duplicates_point_at_their_first(cands, paid_or_cached=True)
    prompts = [json.dumps(r["body"], sort_keys=True) for r in fake.requests]
    assert len(set(prompts)) == 3 * settings.n_dev + settings.n_test  # every prompt asked
    assert summary["calls"] == len(fake.requests)  # ...and paid for: a request cut off by the stop included
    assert len(prompts) - len(set(prompts)) <= settings.n_dev  # re-asked: only those cut off on the wire
