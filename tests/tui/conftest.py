"""Fixtures for the TUI tests: a history pre-filled through the real History API, and a scripted engine.

The history is deterministic (fixed runs, instructions, scores) so snapshots do not change from run to run; it
lives in the per-test IZ_HOME that tests/conftest.py sets, so the app and the engine find it by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import paths
from engine.config import Config
from engine.errors import EngineError
from engine.store import History, open_history
from engine.usage import Usage
from engine.wire.events import (
    CandidateProposed,
    CandidateScored,
    Event,
    IterationDone,
    RerankProgress,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)

ENDPOINT = {"name": "embedded", "base_url": "embedded", "model": "smollm2-135m-instruct"}

RUNS: list[dict[str, Any]] = [
    {
        "task": "larger_animal", "method": "instructzero", "test": 0.7,
        "cands": [
            ("Name the animal.", [0, 1, 0]),
            ("Write the larger of the two animals.", [1, 1, 0]),
            ("Repeat the input.", [0, 0, 0]),
            ("Pick the bigger animal of the pair.", [1, 1, 1]),
            ("Write the larger of the two animals.", [1, 1, 0]),
            ("Which animal is heavier? Answer with its name.", [1, 0, 1]),
        ],
    },
    {
        "task": "larger_animal", "method": "random", "test": 0.4,
        "cands": [
            ("Say something about animals.", [0, 0, 1]),
            ("List both animals.", [0, 1, 0]),
            ("Name the first animal.", [1, 0, 0]),
            ("Write the larger animal.", [1, 0, 1]),
        ],
    },
    {
        "task": "first_letter", "method": "ape", "test": 0.9,
        "cands": [
            ("Write the first letter of the word.", [1, 1, 1]),
            ("Spell the word backwards.", [0, 0, 0]),
            ("Give the initial of the word.", [1, 1, 0]),
        ],
    },
]
INPUTS = {"larger_animal": [("pigeon, cheetah", "cheetah"), ("horse, skunk", "horse"), ("goldfish, deer", "deer")],
          "first_letter": [("apple", "a"), ("banana", "b"), ("cherry", "c")]}


def fill_history(h: History) -> dict[str, Any]:
    """Write three finished runs (two methods on one task, one on another) with outputs, test scores, a star."""
    info: dict[str, Any] = {"runs": [], "best": {}}
    for spec in RUNS:
        settings = {"method": spec["method"], "n_init": 2, "batch_size": 2, "n_dev": 3, "n_test": 3,
                    "budget_evaluations": len(spec["cands"]), "seed": 0, "instructions": []}
        rid = h.create_run(spec["task"], spec["method"], settings, ENDPOINT)
        info["runs"].append(rid)
        best_id, best, best_text, seen = None, -1.0, "", {}
        for pos, (text, per) in enumerate(spec["cands"]):
            cid = h.add_candidate(rid, pos // 2, pos, [0.1 * pos] * 3, text)
            dev = sum(per) / len(per)
            dup = seen.get(text)
            outputs = [] if dup else [
                {"example_index": i, "input": inp, "answers": [ans], "output": ans if ok else "I am not sure.",
                 "score": float(ok), "cache_hit": False, "prompt_tokens": 20, "completion_tokens": 3,
                 "latency_s": 0.1}
                for i, ((inp, ans), ok) in enumerate(zip(INPUTS[spec["task"]], per, strict=True))]
            usage = Usage.reused(len(per)) if dup else Usage.of_answers(outputs)
            h.record_score(cid, dev_score=dev, scores=[float(p) for p in per], outputs=outputs, usage=usage,
                           duplicate_of=dup)
            seen.setdefault(text, cid)
            if dev > best:
                best_id, best, best_text = cid, dev, text
        test_outputs = [{"example_index": i, "input": inp, "answers": [ans], "output": ans, "score": 1.0,
                         "cache_hit": False} for i, (inp, ans) in enumerate(INPUTS[spec["task"]])]
        h.add_score(best_id, kind="test", split="test", endpoint=ENDPOINT, metric="contains", score=spec["test"],
                    outputs=test_outputs)
        n = len(spec["cands"])
        h.update_run(rid, status="finished", evaluations=n, calls=n * 3, calls_saved=3, best_candidate_id=best_id,
                     best_instruction=best_text, best_dev_score=best, test_score=spec["test"], seconds=12.5,
                     started_at="2025-01-01T00:00:00.000+00:00", finished_at="2025-01-01T00:01:00.000+00:00",
                     created_at="2025-01-01T00:00:00.000+00:00")
        info["best"][rid] = best_id
    h.set_mark(info["best"][info["runs"][0]], star=True, note="the clear winner")
    return info


@pytest.fixture
def history(_sandbox_home: Path) -> Iterator[History]:
    h = open_history(paths.history_db())
    yield h
    h.close()


@pytest.fixture
def filled(history: History) -> dict[str, Any]:
    return fill_history(history)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports go under the current directory: make it a temporary one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class FakeEngine:
    """A scripted stand-in for EngineClient (fast tests of the run screen); the real one is in the e2e test.

    ``script`` decides what happens after start_run: "finish" plays a small run, "fail" a RunFailed, "die" an
    engine death (EngineError on the next request), "hang" waits for a cancel.
    """

    def __init__(self, on_event: Callable[[Event], Any], script: str = "finish") -> None:
        self.on_event = on_event
        self.script = script
        self.started = False
        self.closed = False
        self.cancelled: list[int] = []
        self.reranked: list[list[int]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._cancel = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.proc = None
        self.dead: EngineError | None = None

    @property
    def alive(self) -> bool:
        return self.started and not self.closed and self.dead is None

    async def start(self) -> FakeEngine:
        self.started = True
        return self

    async def close(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()

    async def start_run(self, task: str, *, settings: dict[str, Any] | None = None, endpoint: str | None = None,
                        model: str | None = None, instructions: list[str] | None = None) -> int:
        self.requests.append(("start_run", {"task": task, "settings": settings, "endpoint": endpoint,
                                            "instructions": instructions}))
        if self.script == "die":
            self.dead = EngineError("the engine process exited with code 1; its last log lines:\n"
                                    "    Traceback (most recent call last):\n"
                                    '      File "x.py", line 1, in <module>\n'
                                    "    MemoryError: out of memory",
                                    "see the engine log; runs that were going on can be resumed")
            raise self.dead
        run_id = 41
        t = asyncio.create_task(self._play(run_id, task, settings or {}))
        self._tasks.add(t)
        return run_id

    async def _play(self, run_id: int, task: str, settings: dict[str, Any]) -> None:
        emit = self.on_event
        budget = int(settings.get("budget_evaluations") or 4)
        await asyncio.sleep(0.01)
        emit(RunStarted(run_id, task, str(settings.get("method", "instructzero")), budget))
        emit(Status(run_id, "loading the generator model"))
        if self.script == "fail":
            emit(RunFailed(run_id, "the endpoint http://127.0.0.1:9/v1 refused the connection",
                           "start the server or pick another endpoint profile"))
            return
        texts = ["Name the animal.", "Write the larger animal.", "Write the larger animal.", "Pick the bigger one."]
        scores = [0.2, 0.6, 0.6, 0.8]
        best, best_id, calls, saved = -1.0, 0, 0, 0
        for i in range(budget):
            if self.script == "hang" and i == 2:
                await self._cancel.wait()
                emit(RunFinished(run_id, "cancelled", None, self._summary(run_id, task, i, best_id, best, None)))
                return
            cid = 100 + i
            text, score = texts[i % 4], scores[i % 4]
            emit(CandidateProposed(run_id, cid, i // 2, i, text))
            dup = i == 2
            calls += 0 if dup else 3
            saved += 3 if dup else 0
            is_best = score > best
            if is_best:
                best, best_id = score, cid
            emit(CandidateScored(run_id, cid, i // 2, i, text, score, dup, 101 if dup else None, i + 1, budget,
                                 calls, saved, best, best_id, is_best,
                                 stopped_after=1 if i == 4 else None))  # 104: raced out after 1 example
            if i % 2 == 1:
                emit(IterationDone(run_id, i // 2, best, i + 1))
            await asyncio.sleep(0)
        emit(Status(run_id, "scoring the best instruction on 3 test examples"))
        emit(RunFinished(run_id, "finished", None, self._summary(run_id, task, budget, best_id, best, 0.667)))

    def _summary(self, run_id: int, task: str, n: int, best_id: int, best: float, test: float | None) -> dict:
        texts = {100: "Name the animal.", 101: "Write the larger animal.", 103: "Pick the bigger one."}
        return {"run_id": run_id, "task": task, "method": "instructzero", "status": "finished",
                "best_candidate_id": best_id, "best_instruction": texts.get(best_id), "dev_score": best,
                "test_score": test, "evaluations": n, "calls": 9, "calls_saved": 3, "tokens": 100, "seconds": 3.0,
                "raced_out": 1, "answers_skipped": 2}

    async def cancel_run(self, run_id: int) -> bool:
        self.cancelled.append(run_id)
        self._cancel.set()
        return True

    async def resume_run(self, run_id: int) -> int:
        self.requests.append(("resume_run", {"run_id": run_id}))
        return run_id

    async def rerank(self, candidate_ids: list[int], *, split: str = "test", n_examples: int | None = None,
                     endpoint: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """Like the engine: store a rerank score per candidate (here: dev score + 0.1 * position), emit progress."""
        self.reranked.append(list(candidate_ids))
        if self.script == "die":
            raise EngineError("the engine process was killed by signal 9", "restart iz")
        h = open_history(paths.history_db())
        results = []
        try:
            for done, cid in enumerate(candidate_ids, start=1):
                c = h.candidate(cid)
                score = round(min(1.0, 0.05 + 0.1 * done), 3)
                h.add_score(cid, kind="rerank", split=split, endpoint=ENDPOINT, metric="contains", score=score,
                            outputs=[])
                self.on_event(RerankProgress(c["run_id"], cid, done, len(candidate_ids), score))
                results.append({"candidate_id": cid, "run_id": c["run_id"], "instruction": c["instruction"],
                                "dev_score": c["dev_score"], "test_score": c["test_score"], "rerank_score": score,
                                "split": split, "n_examples": n_examples or 3, "endpoint": endpoint or "embedded"})
        finally:
            h.close()
        return sorted(results, key=lambda r: -r["rerank_score"])


@pytest.fixture
def fake_engine() -> Callable[[str], Callable[[Callable[[Event], Any]], FakeEngine]]:
    """``fake_engine("finish")`` → an engine factory for IZApp; the built engine is kept on the factory."""

    def make(script: str = "finish") -> Callable[[Callable[[Event], Any]], FakeEngine]:
        def factory(on_event: Callable[[Event], Any]) -> FakeEngine:
            factory.engine = FakeEngine(on_event, script)  # type: ignore[attr-defined]
            return factory.engine  # type: ignore[attr-defined]

        return factory

    return make


def default_config() -> Config:
    """The built-in defaults (no user file), so the home screen looks the same on every machine."""
    return Config()
