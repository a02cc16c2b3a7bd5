"""A misbehaving endpoint, through the engine: transient faults change nothing, permanent ones stop the run cleanly.

The endpoint is a local server on 127.0.0.1 that answers deterministically and injects faults at a seeded 30% rate
(429 with Retry-After, 500, 503, an answer slower than the timeout, a dropped connection, malformed JSON, an empty
``choices`` list, a choice without content). A run that meets them must end with exactly what a fault-free run of
the same settings gets: the same candidate instructions (APE: the endpoint writes them, so proposals meet faults
too), the same dev scores, the same test score, the same paid calls. Permanent failures (401, 404, a server that
accepts and never answers, one whose answer never ends) stop the run with one clear message and status
``failed``, keeping every candidate scored before them; once the endpoint is fixed the run resumes from there.

Most runs use the engine in this process (fast: backoff shrunk through the client's module constant); one
transient and one permanent case go through the real engine process with the real backoff.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_fakes import (
    FAULTS,
    PERMANENT,
    FakeOpenAI,
    check_integrity,
    engine_env,
    finished_keys,
    write_config,
)

from engine.config import Config, EndpointProfile
from engine.errors import EndpointError, IZError
from engine.runner import Engine
from engine.store import History, open_history
from engine.wire.client import EngineClient
from engine.wire.events import Event, RunFailed, RunFinished

pytestmark = pytest.mark.timeout(180)

TASK = "larger_animal"
#: APE on a tiny budget: 2 + 1 + 1 proposals, 4 instructions x 3 dev examples, 2 test examples.
APE = {"method": "ape", "n_init": 2, "batch_size": 2, "budget_evaluations": 4, "n_dev": 3, "n_test": 2,
       "n_demos": 2, "seed": 3}
MANUAL = {"method": "manual", "n_dev": 3, "n_test": 2, "n_demos": 2}
INSTRUCTIONS = ["Name the larger animal.", "Write the bigger of the two.", "Answer with one animal only.",
                "Say which animal weighs more."]
TIMEOUT_S = 0.5
RATE = 0.3
SEED = 11


def config_for(url: str, **profile: Any) -> Config:
    base: dict[str, Any] = {"base_url": url, "model": "fake-model", "timeout_s": TIMEOUT_S, "max_retries": 4}
    return Config(default_endpoint="fake", endpoints={"fake": EndpointProfile(**{**base, **profile})})


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, retry waits of milliseconds (a Retry-After is still honoured as sent)."""
    monkeypatch.setattr("engine.blackbox.client.BACKOFF_BASE_S", 0.005)


def snapshot(h: History, run_id: int) -> dict[str, Any]:
    """What a run found, without ids or timings: comparable between two runs of the same settings."""
    run = h.run(run_id)
    cands = h.candidates(run_id)
    return {
        "status": run["status"],
        "candidates": [(c["position"], c["iteration"], c["instruction"], c["dev_score"], c["scores"],
                        c["duplicate_of"] is None) for c in cands],
        "outputs": [[(o["input"], o["output"], o["score"]) for o in h.outputs(c["id"], "dev")] for c in cands],
        "best_instruction": run["best_instruction"],
        "best_dev_score": run["best_dev_score"],
        "test_score": run["test_score"],
        "evaluations": run["evaluations"],
        "calls": run["calls"],
    }


async def run_in_process(url: str, db: Path, settings: dict[str, Any], instructions: list[str] | None = None,
                         **profile: Any) -> tuple[int, list[Event], dict[str, Any] | None, IZError | None]:
    """One run on the engine in this process; never raises (the error, if any, is returned)."""
    engine = Engine(config_for(url, **profile), open_history(db))
    events: list[Event] = []
    run_id = engine.create_run(TASK, settings, instructions=instructions or [])
    summary, error = None, None
    try:
        summary = await asyncio.wait_for(engine.execute(run_id, emit=events.append), 60)
    except IZError as exc:
        error = exc
    finally:
        await engine.aclose()
        engine.history.close()
    return run_id, events, summary, error


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fault-free run every faulty one must match."""
    fake = FakeOpenAI()
    db = tmp_path_factory.mktemp("baseline") / "history.db"
    try:
        run_id, _, summary, error = asyncio.run(run_in_process(fake.url, db, APE))
    finally:
        fake.close()
    assert error is None and summary is not None and summary["status"] == "finished"
    h = open_history(db)
    snap = snapshot(h, run_id)
    h.close()
    assert snap["evaluations"] == APE["budget_evaluations"] and snap["test_score"] is not None
    assert len({c[3] for c in snap["candidates"]}) > 1, "the fake should score instructions differently"
    return {"snapshot": snap, "requests": len(fake.log)}


def _check_same(snap: dict[str, Any], baseline: dict[str, Any]) -> None:
    want = baseline["snapshot"]
    assert [c[2] for c in snap["candidates"]] == [c[2] for c in want["candidates"]]  # the same instructions
    assert snap == want


# -- transient faults -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("faults", [(f,) for f in FAULTS] + [FAULTS], ids=[*FAULTS, "all_mixed"])
async def test_transient_faults_leave_the_same_run(faults: tuple[str, ...], baseline: dict[str, Any],
                                                   fake_openai: Callable[..., FakeOpenAI], tmp_path: Path) -> None:
    fake = fake_openai(fault_rate=RATE, faults=faults, seed=SEED, slow_s=TIMEOUT_S + 0.4)
    db = tmp_path / "history.db"
    run_id, events, summary, error = await run_in_process(fake.url, db, APE)
    assert error is None, error
    assert summary is not None and summary["status"] == "finished"
    injected = [r.fault for r in fake.log if r.fault]
    assert set(injected) == set(faults) if len(faults) == 1 else len(set(injected)) >= 3, injected
    assert 0.15 < len(injected) / len(fake.log) < 0.5, f"{len(injected)} faults in {len(fake.log)} requests"
    assert len(fake.log) == baseline["requests"] + len(injected)  # each fault cost exactly one retry
    check_integrity(db)
    h = open_history(db)
    try:
        _check_same(snapshot(h, run_id), baseline)
        # Nothing a fault produced was kept as an answer: every cached answer is one the server really gave.
        assert len(list(h.db.query("select key from cache"))) == baseline["requests"]
    finally:
        h.close()
    assert [type(e).__name__ for e in events].count("RunFailed") == 0


async def test_transient_faults_through_the_engine_process(baseline: dict[str, Any], tmp_path: Path,
                                                           fake_openai: Callable[..., FakeOpenAI]) -> None:
    """The same, through `python -m engine serve` with its real retry waits."""
    fake = fake_openai(fault_rate=RATE, faults=FAULTS, seed=SEED, slow_s=TIMEOUT_S + 0.4)
    home = tmp_path / "home"
    write_config(home, fake.url, timeout_s=TIMEOUT_S, max_retries=4)
    async with EngineClient(env=engine_env(home)) as client:
        run_id = await client.start_run(TASK, settings=APE)
        last = await asyncio.wait_for(client.wait_run(run_id), 120)
    assert isinstance(last, RunFinished) and last.status == "finished", last
    assert any(r.fault for r in fake.log)
    db = home / "history.db"
    check_integrity(db)
    h = open_history(db)
    try:
        _check_same(snapshot(h, run_id), baseline)
    finally:
        h.close()


# -- permanent failures -----------------------------------------------------------------------------------------
#: What the one message must say, by failure.
SAYS = {"401": "bad or missing API key", "404": "not found", "hang": "did not answer", "stream": "did not answer"}


def _check_failed_after_two(db: Path, run_id: int, events: list[Event], kind: str, url: str) -> None:
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert len(failed) == 1 and not any(isinstance(e, RunFinished) for e in events)
    problem = failed[0].problem
    assert SAYS[kind] in problem and url in problem, problem
    assert "Traceback" not in problem and failed[0].fix
    check_integrity(db)
    h = open_history(db)
    try:
        run = h.run(run_id)
        assert run["status"] == "failed" and problem in run["error"] and "Traceback" not in run["error"]
        cands = h.candidates(run_id)
        # The two candidates scored before the failure are kept, whole; the third was being scored.
        assert [c["status"] for c in cands[:2]] == ["scored", "scored"]
        assert all(len(h.outputs(c["id"], "dev")) == MANUAL["n_dev"] for c in cands[:2])
        assert cands[2]["status"] == "proposed" and h.outputs(cands[2]["id"]) == []
        assert run["evaluations"] == 2
    finally:
        h.close()


@pytest.mark.parametrize("kind", PERMANENT)
async def test_permanent_failure_stops_the_run_and_keeps_what_was_scored(
        kind: str, fake_openai: Callable[..., FakeOpenAI], tmp_path: Path) -> None:
    fake = fake_openai()
    fake.permanent, fake.permanent_after = kind, 2 * MANUAL["n_dev"]  # from the third candidate on
    db = tmp_path / "history.db"
    t0 = asyncio.get_running_loop().time()
    run_id, events, summary, error = await run_in_process(fake.url, db, MANUAL, INSTRUCTIONS, max_retries=1)
    assert asyncio.get_running_loop().time() - t0 < 20, "a permanent failure must not stall the run"
    assert summary is None and isinstance(error, EndpointError), error
    _check_failed_after_two(db, run_id, events, kind, fake.url)
    if kind in ("401", "404"):  # no retry can fix these: asked once each (the batch's unscored candidates are
        faulty = [json.dumps(r.body, sort_keys=True) for r in fake.log if r.fault]  # asked together)
        assert len(faulty) == len(set(faulty)) <= MANUAL["n_dev"] * (len(INSTRUCTIONS) - 2)
    finished = finished_keys(db, fake.log)
    assert len(finished) == 2 * MANUAL["n_dev"]

    # The endpoint is fixed: the run resumes where it stopped and pays nothing twice.
    mark = fake.mark()
    fake.reset()
    engine = Engine(config_for(fake.url, max_retries=1), open_history(db))
    try:
        summary = await asyncio.wait_for(engine.resume(run_id), 60)
    finally:
        await engine.aclose()
        engine.history.close()
    assert summary["status"] == "finished" and summary["evaluations"] == len(INSTRUCTIONS)
    assert not [r for r in fake.since(mark) if r.key in finished]
    check_integrity(db)


async def test_an_endless_answer_fails_the_engine_process_run_cleanly(
        fake_openai: Callable[..., FakeOpenAI], tmp_path: Path) -> None:
    """Through the real engine process: a server that streams its answer forever."""
    fake = fake_openai()
    fake.permanent, fake.permanent_after = "stream", 2 * MANUAL["n_dev"]
    home = tmp_path / "home"
    write_config(home, fake.url, timeout_s=TIMEOUT_S, max_retries=1)
    events: list[Event] = []
    async with EngineClient(env=engine_env(home)) as client:
        run_id = await client.start_run(TASK, settings=MANUAL, instructions=INSTRUCTIONS)
        last = await asyncio.wait_for(client.wait_run(run_id, events.append), 60)
        assert client.alive  # the engine itself is fine
    assert isinstance(last, RunFailed)
    _check_failed_after_two(home / "history.db", run_id, events, "stream", fake.url)
