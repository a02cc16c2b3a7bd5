"""End to end through the real engine process: every method, the store, cancel, SIGKILL + resume.

Real parts only: `python -m engine serve` as a subprocess (through EngineClient), the bundled SmolLM2 generator,
the llama.cpp server serving the bundled weights over HTTP, and a SQLite history file. Budgets are tiny so the
whole file runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.errors import EngineError
from engine.prompts import DIRECT_QUESTION
from engine.store import open_history
from engine.wire.client import EngineClient
from engine.wire.events import CandidateScored, RunFailed, RunFinished, Status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TASK = "larger_animal"
TINY = {"n_init": 3, "batch_size": 2, "budget_evaluations": 5, "n_dev": 3, "n_test": 4, "n_demos": 3}


def _check_run_in_store(run_id: int, n_dev: int, n_test: int) -> dict[str, Any]:
    h = open_history()
    run = h.run(run_id)
    assert run["status"] == "finished", run
    cands = h.candidates(run_id)
    # Only a new instruction costs an evaluation; a repeat is stored too (scored for free, as BO information).
    assert len(cands) == run["evaluations"] + run["evaluations_saved"]
    assert sum(c["duplicate_of"] is None for c in cands) == run["evaluations"]
    assert all(c["status"] == "scored" and c["dev_score"] is not None for c in cands)
    for c in cands:
        asked = len(c["scores"])  # fewer than n_dev only when racing stopped it
        assert asked == n_dev or (c["stopped_early"] and 0 < asked < n_dev)
        assert abs(sum(c["scores"]) / asked - c["dev_score"]) < 1e-9
        if c["duplicate_of"] is None:
            outs = h.outputs(c["id"], "dev")
            assert len(outs) == asked and all(isinstance(o["output"], str) for o in outs)
            assert [o["score"] for o in outs] == c["scores"]
        else:
            assert h.candidate(c["duplicate_of"])["instruction"] == c["instruction"]
    best = max(cands, key=lambda c: (c["dev_score"], -c["position"]))
    assert run["best_candidate_id"] == best["id"]
    assert run["best_instruction"] == best["instruction"]
    test_scores = [s for s in h.scores(best["id"]) if s["kind"] == "test"]
    assert len(test_scores) == 1 and test_scores[0]["n_examples"] == n_test
    assert run["test_score"] == test_scores[0]["score"]
    assert len(h.outputs(best["id"], "test")) == n_test
    asked = sum(len(c["scores"]) for c in cands if c["duplicate_of"] is None)  # racing may ask fewer than n_dev
    assert run["calls"] + run["calls_saved"] >= asked >= run["evaluations"]
    return run


@pytest.fixture(scope="module")
def iz_home_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("iz_e2e_home")


@pytest.mark.parametrize("method", ["instructzero", "random", "ape", "ape_local", "opro", "instinct", "manual"])
def test_each_method_end_to_end(method: str, monkeypatch: pytest.MonkeyPatch, iz_home_module: Path) -> None:
    monkeypatch.setenv("IZ_HOME", str(iz_home_module))
    instructions = (["Write the larger of the two animals.", "Say banana.", "Write the larger of the two animals."]
                    if method == "manual" else None)

    async def go() -> tuple[int, Any, list[Any]]:
        async with EngineClient() as client:
            run_id = await client.start_run(TASK, settings={**TINY, "method": method}, instructions=instructions)
            seen: list[Any] = []
            last = await client.wait_run(run_id, seen.append)
            return run_id, last, seen

    run_id, last, seen = asyncio.run(go())
    assert isinstance(last, RunFinished), last
    run = _check_run_in_store(run_id, TINY["n_dev"], TINY["n_test"])
    scored = [e for e in seen if isinstance(e, CandidateScored)]
    assert len(scored) == run["evaluations"] + run["evaluations_saved"]
    assert last.summary["best_instruction"] == run["best_instruction"]
    if method == "manual":
        assert run["evaluations"] == 2 and run["evaluations_saved"] == 1  # the repeated instruction is not re-paid
    else:
        assert run["evaluations"] == TINY["budget_evaluations"]
    cands = open_history().candidates(run_id)
    if method == "instinct":  # the pool's distinct texts, each with the z that wrote it
        assert all(len(c["z"]) == 10 for c in cands) and len({c["instruction"] for c in cands}) == len(cands)
    elif method in ("instructzero", "random"):
        assert all(len(c["z"]) == 10 for c in cands)
        # The initial design, then BO (or random) batches: more than one when a batch repeats instructions.
        assert {0, 1} <= {c["iteration"] for c in cands}
    else:
        assert all(c["z"] is None for c in cands)
    statuses = [e.message for e in seen if isinstance(e, Status)]
    if method == "ape":  # the paper's APE: the run's own endpoint proposes (3, then 2), and those calls are paid
        assert [m for m in statuses if m.endswith("(APE)")] == [
            "asking embedded for 3 instructions (APE)", "asking embedded for 2 instructions (APE)"]
        assert not any("preparing generator" in m for m in statuses)
        assert all(c["instruction"].strip() for c in cands)


@pytest.mark.parametrize("resample", [0, 2])
def test_soft_prompts_that_all_write_one_text_are_sampled_again(resample: int, monkeypatch: pytest.MonkeyPatch,
                                                                 iz_home_module: Path) -> None:
    """A soft prompt too small to matter (scale 1e-4) makes greedy decoding write (almost) the same instruction for
    every z, as the 1.5B generator does on many tasks (a batch's float rounding can flip a near-tie, so one or two
    texts). Greedy only (0): the run stops early, its budget unspent. With second tries (2): the repeats are
    decoded again by sampling and the run spends its budget on new texts."""
    monkeypatch.setenv("IZ_HOME", str(iz_home_module))
    settings = {**TINY, "method": "random", "soft_scale": 1e-4, "resample_repeats": resample, "seed": 3}

    async def go() -> tuple[int, Any, list[Any]]:
        async with EngineClient() as client:
            run_id = await client.start_run(TASK, settings=settings)
            seen: list[Any] = []
            return run_id, await client.wait_run(run_id, seen.append), seen

    run_id, last, seen = asyncio.run(go())
    assert isinstance(last, RunFinished), last
    run = _check_run_in_store(run_id, TINY["n_dev"], TINY["n_test"])
    cands = open_history().candidates(run_id)
    statuses = [e.message for e in seen if isinstance(e, Status)]
    if resample == 0:
        assert len({c["instruction"] for c in cands}) <= 2 < len(cands)
        assert run["evaluations"] < TINY["budget_evaluations"] and run["stop_reason"] == "no_new_instructions"
        assert not any("sampling them again" in m for m in statuses)
    else:
        assert run["evaluations"] == TINY["budget_evaluations"] and run["stop_reason"] == "evaluations"
        assert len({c["instruction"] for c in cands}) >= TINY["budget_evaluations"]
        assert any("sampling them again found" in m for m in statuses), statuses


def test_a_raced_run_through_the_real_engine(counting_proxy: _CountingProxy) -> None:
    """Racing on the real path (engine subprocess, SmolLM2 generator, llama.cpp black box behind a counting proxy,
    `contains` so SmolLM2's sentences score): the first batch answers every example; later candidates stop at a
    wave boundary only once they could no longer tie the best of the batches before theirs, keep the mean of what
    they answered, and the run's paid calls are exactly the requests the server saw."""
    from engine.paths import user_tasks_dir
    from engine.tasks import load_task

    folder = user_tasks_dir() / "larger_animal_contains"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text('name = "larger_animal_contains"\nmetric = "contains"\n')
    (folder / "data.jsonl").write_text("".join(
        json.dumps({"input": ex.input, "output": list(ex.answers)}) + "\n" for ex in load_task(TASK).examples))
    n_dev, wave = 8, 2
    settings = {"method": "random", "n_init": 3, "batch_size": 3, "budget_evaluations": 9, "n_dev": n_dev,
                "n_test": 2, "n_demos": 3, "race_wave": wave, "seed": 1}

    async def go() -> tuple[int, Any]:
        async with EngineClient() as client:
            run_id = await client.start_run("larger_animal_contains", settings=settings, endpoint=counting_proxy.url,
                                            model="smollm2-135m-instruct")
            return run_id, await client.wait_run(run_id, lambda _: None)

    run_id, last = asyncio.run(go())
    assert isinstance(last, RunFinished), last
    run = _check_run_in_store(run_id, n_dev, 2)
    cands = open_history().candidates(run_id)
    assert run["calls"] == len(counting_proxy.log)
    best_before: dict[int, float] = {}
    for it in sorted({c["iteration"] for c in cands}):
        best_before[it] = max((c["dev_score"] for c in cands if c["iteration"] < it), default=-1.0)
    for c in cands:
        if c["duplicate_of"] is not None:
            continue
        bar, s = best_before[c["iteration"]], c["scores"]
        if c["iteration"] == 0:
            assert len(s) == n_dev and not c["stopped_early"]
        for k in range(wave, len(s), wave):  # every wave boundary it passed: a tie was still possible
            assert (sum(s[:k]) + n_dev - k) / n_dev >= bar - 1e-9
        if c["stopped_early"]:
            assert len(s) % wave == 0 and (sum(s) + n_dev - len(s)) / n_dev < bar and c["dev_score"] < bar
            assert c["calls"] == len(s)
    raced = [c for c in cands if c["stopped_early"]]
    print(f"\n{len(raced)} of {len(cands)} candidates raced out; {run['calls']} calls; best {run['best_dev_score']}")
    assert raced, [(c["iteration"], c["dev_score"], c["scores"]) for c in cands]


class _CountingProxy:
    """A loopback HTTP proxy in front of the llama.cpp server that records every request and when it finished."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                entry = {"path": self.path, "prompt": json.dumps(json.loads(body).get("messages")), "done": False}
                with proxy.lock:
                    proxy.log.append(entry)
                r = httpx.post(proxy.upstream + self.path.removeprefix("/v1"), content=body,
                               headers={"Content-Type": "application/json"}, timeout=120)
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)
                entry["done"] = True

            def do_GET(self) -> None:  # noqa: N802
                r = httpx.get(proxy.upstream + self.path.removeprefix("/v1"), timeout=30)
                self.send_response(r.status_code)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def counting_proxy(embedded_server: Any) -> Iterator[_CountingProxy]:
    base = getattr(embedded_server, "base_url", embedded_server)
    p = _CountingProxy(base)
    yield p
    p.close()


def test_sigkill_mid_run_then_resume_repays_no_finished_call(counting_proxy: _CountingProxy) -> None:
    settings = {"n_init": 4, "batch_size": 3, "budget_evaluations": 7, "n_dev": 4, "n_test": 4, "n_demos": 3}

    async def first_half() -> int:
        client = EngineClient()
        await client.start()
        run_id = await client.start_run(TASK, settings=settings, endpoint=counting_proxy.url,
                                        model="smollm2-135m-instruct")
        while True:
            ev = await asyncio.wait_for(client.events.get(), timeout=600)
            if isinstance(ev, RunFinished | RunFailed):
                pytest.fail(f"the run ended before it could be killed: {ev}")
            if isinstance(ev, CandidateScored) and ev.evaluations >= 3:
                break
        client.kill()
        with pytest.raises(EngineError, match="killed by signal 9"):
            await client.status()
        return run_id

    run_id = asyncio.run(first_half())
    h = open_history()
    assert h.run(run_id)["status"] == "running"  # what a SIGKILL leaves behind
    before = list(counting_proxy.log)
    finished_before = {e["prompt"] for e in before if e["done"]}
    assert len(finished_before) >= 3 * settings["n_dev"]

    async def resume() -> Any:
        async with EngineClient() as client:
            await client.resume_run(run_id)
            return await client.wait_run(run_id)

    last = asyncio.run(resume())
    assert isinstance(last, RunFinished), last
    after = counting_proxy.log[len(before):]
    repaid = [e for e in after if e["prompt"] in finished_before]
    assert repaid == [], f"{len(repaid)} finished calls were paid again after resume"
    run = _check_run_in_store(run_id, settings["n_dev"], settings["n_test"])
    assert run["evaluations"] == settings["budget_evaluations"]
    # The first three evaluations survived the kill untouched (same ids, same scores).
    assert len([c for c in h.candidates(run_id) if c["position"] < 3]) == 3


def test_ape_proposes_through_the_endpoint_and_a_repeat_is_free(counting_proxy: _CountingProxy,
                                                                  iz_home: Path) -> None:
    """`iz run <task> --method ape --budget 4 --init 4 --batch 4 --dev 3 --test 3`: the real llama.cpp server
    writes the instructions (over HTTP, counted as the run's calls); the same run again is served by the cache."""
    settings = {"method": "ape", "budget_evaluations": 4, "n_init": 4, "batch_size": 4, "n_dev": 3, "n_test": 3,
                "n_demos": 3}

    async def go() -> tuple[int, Any]:
        async with EngineClient() as client:
            run_id = await client.start_run(TASK, settings=settings, endpoint=counting_proxy.url,
                                            model="smollm2-135m-instruct")
            return run_id, await client.wait_run(run_id)

    run_id, last = asyncio.run(go())
    assert isinstance(last, RunFinished), last
    run = _check_run_in_store(run_id, settings["n_dev"], settings["n_test"])
    sent = list(counting_proxy.log)
    proposals = [e for e in sent if "I gave a friend an instruction" in e["prompt"] or DIRECT_QUESTION in e["prompt"]]
    cands = open_history().candidates(run_id)
    # One request per candidate, each with its own demo order and seed; a repeated proposal is free and asks again.
    assert len(proposals) >= len(cands) >= 4
    assert len({e["prompt"] for e in proposals}) > 1
    assert run["calls"] == len(sent)  # every request, the proposer's included, is a paid call of the run
    assert all(c["instruction"].strip() for c in cands)

    run_id2, last2 = asyncio.run(go())
    assert isinstance(last2, RunFinished), last2
    assert counting_proxy.log[len(sent):] == []  # nothing asked again: proposals and scores from the cache
    run2 = open_history().run(run_id2)
    assert run2["calls"] == 0
    assert [c["instruction"] for c in open_history().candidates(run_id2)] == [c["instruction"] for c in cands]
