"""Racing (engine/blackbox/scoring.py ``Race``, the runner's ``_score_batch``): from the second batch on, a
candidate's dev examples go out in waves and its scoring stops once it can no longer reach the run's best so far.

Why these tests: racing decides what a run pays for and what the history records for a candidate, so they check
it on the wire (a fake OpenAI-compatible endpoint that answers larger_animal correctly under "Good" instructions
and wrongly under the others records every request) and in the store: which examples were asked, what was kept,
that a candidate that could still tie the best is never cut, that the surrogate still gets a full score vector,
and that a batch's candidates are asked together (so waves do not serialise a run) unless a calls budget needs
them one at a time.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from engine.blackbox import BlackBox, Race, score_instruction
from engine.config import EndpointProfile, RunSettings
from engine.methods import METHODS
from engine.tasks import load_task, make_splits
from engine.wire.events import CandidateScored, Event
from tests.unit.unit_fakes import FakeEndpoint, FakeGenerator, bo_inputs, engine_with_fakes, run_to_end

pytestmark = pytest.mark.usefixtures("no_real_generator")

TASK = "larger_animal"


def _asked(fake: FakeEndpoint, instruction: str) -> int:
    return fake.asking(f"Instruction: {instruction}\\n")


def _score(fake: FakeEndpoint, instruction: str, n: int, race: Race | None) -> Any:
    task = load_task(TASK)
    dev = make_splits(task, n_demos=2, n_dev=n, n_test=0, seed=0).dev

    async def go() -> Any:
        async with BlackBox(EndpointProfile(base_url=fake.url, model="m", max_retries=0)) as bb:
            return await score_instruction(bb, task, instruction, dev, race=race)

    return asyncio.run(go())


def test_a_hopeless_candidate_stops_after_its_first_wave(graded: FakeEndpoint) -> None:
    r = _score(graded, "Bad one.", 20, Race(bar=0.8, wave=5))
    assert _asked(graded, "Bad one.") == 5 and len(r.per_example) == 5 == len(r.outputs)
    assert r.stopped_early and r.mean == 0.0 and r.n_examples == 20
    assert [o["example_index"] for o in r.outputs] == [0, 1, 2, 3, 4]


def test_a_candidate_that_can_still_win_or_tie_answers_every_example(graded: FakeEndpoint) -> None:
    r = _score(graded, "Good one.", 20, Race(bar=1.0, wave=5))
    assert _asked(graded, "Good one.") == 20 and not r.stopped_early and r.mean == 1.0
    # "Half" misses some: it goes on while a tie with the bar is still possible and stops at the first wave
    # after which it is not; the mean it keeps is below the bar.
    half = _score(graded, "Half right.", 20, Race(bar=0.75, wave=5))
    misses = [1 - s for s in half.per_example]
    asked = _asked(graded, "Half right.")
    assert asked == len(half.per_example)
    for k in range(5, asked, 5):  # every wave boundary passed: a tie was still possible there
        assert (20 - sum(misses[:k])) / 20 >= 0.75
    if half.stopped_early:
        assert (20 - sum(misses)) / 20 < 0.75 and half.mean < 0.75
    else:
        assert asked == 20


def test_without_a_race_or_within_one_wave_everything_is_asked(graded: FakeEndpoint) -> None:
    assert not _score(graded, "Bad a.", 20, None).stopped_early and _asked(graded, "Bad a.") == 20
    assert not _score(graded, "Bad b.", 5, Race(bar=1.0, wave=5)).stopped_early and _asked(graded, "Bad b.") == 5


def _settings(**kw: Any) -> RunSettings:
    base: dict[str, Any] = {"method": "random", "intrinsic_dim": 2, "n_soft_tokens": 1, "n_dev": 10, "n_test": 4,
                            "n_demos": 2, "n_init": 2, "batch_size": 3, "n_iterations": 1, "race_wave": 5}
    return RunSettings(**{**base, **kw})


SCRIPT = ["Good start.", "Bad start.",  # first batch: no best yet, both answer all 10
          "Bad later.", "Good later.", "Bad again."]  # second batch: raced against the first batch's best (1.0)


def test_the_runner_races_from_the_second_batch_and_records_it(graded: FakeEndpoint, tmp_path: Path) -> None:
    engine = engine_with_fakes(graded, tmp_path, FakeGenerator(SCRIPT))
    events: list[Event] = []
    summary = run_to_end(engine, TASK, _settings(), events)
    asked = {t: _asked(graded, t) for t in SCRIPT}
    assert asked == {"Good start.": 10 + 4, "Bad start.": 10, "Bad later.": 5, "Good later.": 10, "Bad again.": 5}
    cands = {c["instruction"]: c for c in engine.history.candidates(summary["run_id"])}
    assert [cands[t]["stopped_early"] for t in SCRIPT] == [None, None, 1, None, 1]
    assert len(cands["Bad later."]["scores"]) == 5 and cands["Bad later."]["calls"] == 5
    assert summary["evaluations"] == 5 and summary["calls"] == 10 + 10 + 5 + 10 + 5 + 4
    assert summary["best_instruction"] == "Good start."  # the first of the tied best, as without racing
    assert summary["raced_out"] == 2 and summary["answers_skipped"] == 10
    stops = {e.instruction: e.stopped_after for e in events if isinstance(e, CandidateScored)}
    assert stops == {"Good start.": None, "Bad start.": None, "Bad later.": 5, "Good later.": None,
                     "Bad again.": 5}


def test_race_off_asks_every_example(graded: FakeEndpoint, tmp_path: Path) -> None:
    engine = engine_with_fakes(graded, tmp_path, FakeGenerator(SCRIPT))
    summary = run_to_end(engine, TASK, _settings(race=False), [])
    assert all(_asked(graded, t) == 10 for t in SCRIPT if "Good" not in t)
    assert summary["calls"] == 5 * 10 + 4 and summary["raced_out"] == 0 == summary["answers_skipped"]
    assert all(c["stopped_early"] is None for c in engine.history.candidates(summary["run_id"]))


def _order(fake: FakeEndpoint) -> list[str]:
    out = []
    for r in fake.requests:
        text = json.dumps(r["body"].get("messages") or r["body"].get("prompt"))
        out.append(text.split("Instruction: ", 1)[1].split("\\n", 1)[0] if "Instruction: " in text else "?")
    return out


def test_a_batch_is_asked_together_unless_a_calls_budget_needs_one_at_a_time(graded: FakeEndpoint,
                                                                              tmp_path: Path) -> None:
    """With waves, one candidate at a time would pay a round trip per wave per candidate; together, the second
    batch's first waves all go out before any candidate's second wave."""
    graded.delay = 0.05
    engine = engine_with_fakes(graded, tmp_path / "a", FakeGenerator(SCRIPT))
    run_to_end(engine, TASK, _settings(n_test=0), [])
    second = [t for t in _order(graded)[20:]]
    assert set(second[:15]) == {"Bad later.", "Good later.", "Bad again."}  # 3 first waves of 5, together

    graded.requests.clear()
    engine = engine_with_fakes(graded, tmp_path / "b", FakeGenerator(SCRIPT))
    summary = run_to_end(engine, TASK, _settings(n_test=0, budget_calls=1000), [])
    second = _order(graded)[20:]
    assert second == ["Bad later."] * 5 + ["Good later."] * 10 + ["Bad again."] * 5  # one at a time, in order
    assert summary["calls"] == 40


def test_the_surrogate_gets_a_full_score_vector_for_a_raced_candidate(graded: FakeEndpoint, tmp_path: Path) -> None:
    """InstructZero's BO step after a raced batch: the kernel needs one score per dev example for every point,
    so a raced candidate's unasked examples count at its own mean (a ragged matrix would fail)."""
    engine = engine_with_fakes(graded, tmp_path, FakeGenerator(SCRIPT + ["Good third.", "Bad third.", "Half third."]))
    engine.methods = METHODS  # the real BO step (torch, the coupled kernel), not the fakes' plain points
    with bo_inputs() as seen:
        summary = run_to_end(engine, TASK, _settings(method="instructzero", n_iterations=2, n_test=0), [])
    assert summary["status"] == "finished" and summary["evaluations"] == 8
    assert len(seen) == 2
    S, y = seen[1]  # the second BO step: 2 full + 3 from the raced batch
    assert S.shape == (5, 10)
    cands = [c for c in engine.history.candidates(summary["run_id"]) if c["iteration"] < 2]
    for row, c in zip(S.tolist(), cands, strict=True):
        assert row[: len(c["scores"])] == c["scores"]
        assert all(v == c["dev_score"] for v in row[len(c["scores"]):])


def test_a_stop_in_a_raced_batch_keeps_what_was_answered_and_counts_every_request(graded: FakeEndpoint,
                                                                                   tmp_path: Path) -> None:
    """Cancelled while the second batch's candidates are being asked together: the candidates answered in full
    are recorded, the run's calls count every request the endpoint saw (answers that came back, and requests cut
    off by the stop), and the resumed run finishes with the same candidates, re-asking only what was cut off."""
    graded.delay = 0.05
    engine = engine_with_fakes(graded, tmp_path, FakeGenerator(SCRIPT))
    settings = _settings(n_test=0)

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            run_id = engine.create_run(TASK, settings)
            cancel = asyncio.Event()

            def on(ev: Event) -> None:
                if isinstance(ev, CandidateScored) and ev.iteration == 1:
                    cancel.set()  # the first of the raced batch is recorded; the others are still being asked

            first = await engine.execute(run_id, emit=on, cancel=cancel)
            return first, await engine.resume(run_id)
        finally:
            await engine.aclose()

    first, summary = asyncio.run(go())
    assert first["status"] == "cancelled" and summary["status"] == "finished"
    assert summary["evaluations"] == 5
    # Every request the endpoint saw is counted; a request cut off by the stop is counted as paid whether or not
    # it had left (the endpoint may bill it), so the count may exceed what was seen by at most those cut off:
    # the raced batch's first waves (3 x 5) at most.
    seen = len(graded.requests)
    assert first["calls"] <= summary["calls"] and seen <= summary["calls"] <= seen + 15
    prompts = [json.dumps(r["body"], sort_keys=True) for r in graded.requests]
    assert len(prompts) - len(set(prompts)) <= 15  # re-asked after the resume: only requests cut off
    cands = {c["instruction"]: c for c in engine.history.candidates(summary["run_id"])}
    assert [cands[t]["stopped_early"] for t in SCRIPT] == [None, None, 1, None, 1]
