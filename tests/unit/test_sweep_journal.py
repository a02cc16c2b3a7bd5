"""The sweep's journal: a worker's writes, replayed by the driver, leave the same history as a local run.

Real stores (SQLite files) and the real engine core on the unit tests' loopback endpoint and scripted generator;
the worker and the driver are two stores in one process here (the processes themselves are exercised by
tests/integration/test_sweep.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes, run_to_end

from engine.runner import Engine
from engine.store import History, open_history
from engine.sweep.journal import JournalHistory, Replayer
from engine.sweep.report import render_text, sweep_table
from engine.sweep.spec import SweepSpec, parse_seeds
from engine.wire.events import CandidateScored

SETTINGS = {"method": "random", "n_init": 3, "batch_size": 2, "budget_evaluations": 5, "n_dev": 4, "n_test": 4,
            "n_demos": 2}
SCRIPT = ["Name the bigger one.", "Pick the heavier animal.", "Name the bigger one.", "Say elephant.",
          "Write the larger animal.", "Answer with one animal.", "Name the larger animal."]


def _content(h: History, run_id: int) -> dict[str, Any]:
    """A run as a user sees it, without ids and times (those differ between two stores by design)."""
    run = h.run(run_id)
    cands = h.candidates(run_id)
    index = {c["id"]: i for i, c in enumerate(cands)}
    best = next((index[c["id"]] for c in cands if c["id"] == run["best_candidate_id"]), None)
    return {
        "run": {k: run[k] for k in ("task", "method", "status", "evaluations", "evaluations_saved", "calls",
                                    "calls_saved", "best_instruction", "best_dev_score", "test_score",
                                    "prompt_tokens", "paid_prompt_tokens")},
        "best": best,
        "candidates": [(c["iteration"], c["position"], c["instruction"], c["status"], c["dev_score"], c["scores"],
                        index.get(c["duplicate_of"]), c["calls"], c["calls_saved"]) for c in cands],
        "outputs": [[(o["split"], o["input"], o["output"], o["score"]) for o in h.outputs(c["id"])] for c in cands],
        "scores": [[(s["kind"], s["score"], s["n_examples"]) for s in h.scores(c["id"])] for c in cands],
    }


def _worker(fake: FakeEndpoint, folder: Path, replayer: Replayer, generator: FakeGenerator,
            remote: Any = None) -> Engine:
    """An engine whose store is a journaling scratch file replayed into the driver's (what a sweep worker is)."""
    engine = engine_with_fakes(fake, folder, generator)
    engine.history.close()
    engine.history = JournalHistory(folder / "scratch.db", replayer.apply, remote)
    return engine


class _DriverCache:
    """The driver answering a worker's cache look-ups from its own store (as the local backend does)."""

    def __init__(self, h: History) -> None:
        self.h = h

    def get(self, key: str) -> dict[str, Any] | None:
        return self.h.cache_get(key)

    def put(self, row: dict[str, Any]) -> None:
        return None


def test_a_replayed_run_is_the_run_a_local_engine_records(fake: FakeEndpoint, tmp_path: Path) -> None:
    local = engine_with_fakes(fake, tmp_path / "local", FakeGenerator(SCRIPT))
    summary = run_to_end(local, "larger_animal", SETTINGS, [])
    local_calls = len(fake.requests)

    driver_engine = engine_with_fakes(fake, tmp_path / "driver")
    driver = driver_engine.history
    run_id = driver_engine.create_run("larger_animal", SETTINGS)
    worker = _worker(fake, tmp_path / "worker", Replayer(driver, run_id), FakeGenerator(SCRIPT))
    worker.history.import_run_rows(driver.export_run_rows(run_id))
    events: list[Any] = []

    async def go() -> dict[str, Any]:
        try:
            return await worker.execute(run_id, emit=events.append)
        finally:
            await worker.aclose()

    asyncio.run(go())
    assert len(fake.requests) == 2 * local_calls  # the worker paid what the local run paid, no more
    assert summary["evaluations"] == 5
    assert _content(driver, run_id) == _content(local.history, summary["run_id"])
    # The replayed store is whole: the answers are in the driver's cache, the candidates searchable.
    assert len(driver.db.execute("select * from cache").fetchall()) == local_calls
    assert driver.search("heavier")  # full-text index follows the replayed inserts
    assert driver.db.execute("pragma foreign_key_check").fetchall() == []


def test_a_run_moved_to_a_new_worker_midway_finishes_without_paying_twice(fake: FakeEndpoint,
                                                                          tmp_path: Path) -> None:
    local = engine_with_fakes(fake, tmp_path / "local", FakeGenerator(SCRIPT))
    expected = _content(local.history, run_to_end(local, "larger_animal", SETTINGS, [])["run_id"])
    fake.requests.clear()

    driver_engine = engine_with_fakes(fake, tmp_path / "driver")
    driver = driver_engine.history
    run_id = driver_engine.create_run("larger_animal", SETTINGS)
    replayer = Replayer(driver, run_id)
    generator = FakeGenerator(SCRIPT)  # the scripted model goes on where it stopped, as a deterministic one would

    def session(folder: str, stop_after: int | None) -> None:
        # Each session is a fresh worker: it imports the run as the driver has it, like a replacement worker.
        worker = _worker(fake, tmp_path / folder, replayer, generator, _DriverCache(driver))
        worker.history.import_run_rows(driver.export_run_rows(run_id))
        cancel = asyncio.Event()
        scored: list[int] = []

        def emit(ev: Any) -> None:
            if isinstance(ev, CandidateScored):
                scored.append(ev.candidate_id)
                if stop_after is not None and len(scored) >= stop_after:
                    cancel.set()

        async def go() -> None:
            try:
                await worker.execute(run_id, emit=emit, cancel=cancel)
            finally:
                await worker.aclose()

        asyncio.run(go())

    session("w1", stop_after=2)
    assert driver.run(run_id)["status"] == "cancelled"
    assert len(driver.candidates(run_id, status="scored")) == 2
    session("w2", stop_after=None)
    prompts = [json.dumps(r["body"].get("messages") or r["body"].get("prompt")) for r in fake.requests]
    assert len(prompts) == len(set(prompts)), "a call was paid twice"
    got = _content(driver, run_id)
    assert got["candidates"] == expected["candidates"] and got["best"] == expected["best"]
    assert got["run"]["test_score"] == expected["run"]["test_score"]
    assert got["run"]["status"] == "finished"


def test_a_rolled_back_transaction_is_never_sent(tmp_path: Path) -> None:
    sent: list[Any] = []
    h = JournalHistory(tmp_path / "scratch.db", sent.append)
    driver = open_history(tmp_path / "driver.db")
    run_id = driver.create_run("sum", "random", {}, {"name": "x"})
    h.import_run_rows(driver.export_run_rows(run_id))
    with pytest.raises(RuntimeError), h.transaction():
        h.add_candidate(run_id, 0, 0, None, "lost")
        raise RuntimeError("boom")
    assert sent == [] and h.candidates(run_id) == []
    with h.transaction():
        a = h.add_candidate(run_id, 0, 0, None, "kept")
        h.update_run(run_id, best_candidate_id=a)
    assert len(sent) == 1 and [op[0] for op in sent[0]] == ["add_candidate", "update_run"]
    Replayer(driver, run_id).apply(sent[0])
    (cand,) = driver.candidates(run_id)
    assert cand["instruction"] == "kept" and driver.run(run_id)["best_candidate_id"] == cand["id"]


def test_spec_grid_seeds_and_variants() -> None:
    assert parse_seeds("0-2") == [0, 1, 2] and parse_seeds("0-1,5,1") == [0, 1, 5]
    for bad in ("2-0", "x", ""):
        with pytest.raises(Exception, match="seeds"):
            parse_seeds(bad)
    spec = SweepSpec.build(tasks=["a", "b"], methods=["random", "iz_matern"], seeds=[0, 1],
                           variants={"iz_matern": {"method": "instructzero", "settings": {"kernel": "matern"}}},
                           settings={"n_dev": 3})
    cells = spec.cells()
    assert len(cells) == 8 and [c["seed"] for c in cells[:4]] == [0] * 4  # seed by seed
    assert spec.run_settings("iz_matern", 1) == {"n_dev": 3, "kernel": "matern", "method": "instructzero",
                                                 "seed": 1}
    with pytest.raises(Exception, match="unknown method"):
        SweepSpec.build(tasks=["a"], methods=["nope"])
    with pytest.raises(Exception, match="axes"):
        SweepSpec.build(tasks=["a"], methods=["random"], settings={"seed": 3})


def test_table_means_spreads_and_missing_seeds() -> None:
    cells = [
        {"task": "t1", "method": "random", "status": "finished", "test_score": 0.4},
        {"task": "t1", "method": "random", "status": "finished", "test_score": 0.6},
        {"task": "t1", "method": "manual", "status": "finished", "test_score": 0.9},
        {"task": "t1", "method": "manual", "status": "failed", "test_score": None},
        {"task": "t2", "method": "random", "status": "finished", "test_score": 0.2},
        {"task": "t2", "method": "manual", "status": "pending", "test_score": None},
    ]
    table = sweep_table(cells)
    assert table.stat("random", "t1").text() == "0.50 ±0.14"
    assert table.stat("manual", "t1").text() == "0.90 (1/2)"
    assert table.stat("manual", "t2").text() == "—"
    assert table.method_mean("random") == pytest.approx(0.35)
    assert table.best_method("t1") == "manual"
    rows = render_text(table)
    assert rows[0] == ["method", "t1", "t2", "mean"] and rows[2][-1] == "0.90"


def test_cache_look_ups_fall_back_to_the_sweep_cache_and_puts_reach_it(tmp_path: Path) -> None:
    class Shared:
        def __init__(self) -> None:
            self.rows: dict[str, dict[str, Any]] = {}
            self.asked: list[str] = []

        def get(self, key: str) -> dict[str, Any] | None:
            self.asked.append(key)
            return self.rows.get(key)

        def put(self, row: dict[str, Any]) -> None:
            self.rows[row["key"]] = row

    shared, sent = Shared(), []
    a = JournalHistory(tmp_path / "a.db", sent.append, shared)
    b = JournalHistory(tmp_path / "b.db", sent.append, shared)
    row = {"key": "k1", "base_url": "u", "model": "m", "params": {"t": 0}, "prompt_sha256": "p", "response": "r",
           "prompt_tokens": 1, "completion_tokens": 1, "latency_s": 0.1}
    assert b.cache_get("k1") is None
    a.cache_put(row)  # worker a pays for an answer...
    assert [op[0] for op in sent[-1]] == ["cache_put"]  # ...the driver is told (it stores it)...
    got = b.cache_get("k1")  # ...and worker b gets it from the sweep's cache instead of paying again
    assert got is not None and got["response"] == "r"
    asked = len(shared.asked)
    assert b.cache_get("k1")["response"] == "r" and len(shared.asked) == asked  # now from b's own file
