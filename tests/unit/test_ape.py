"""APE as the paper ran it (engine/ape.py): the forward prompt, per-sample demo orders and seeds, cleaning, the
per-request overrides of the black-box client, and the runner counting the proposer's calls, against a fake
OpenAI-compatible endpoint (a stdlib HTTP server on 127.0.0.1, so the requests are checked on the wire)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from unit_fakes import FORWARD, FakeEndpoint  # noqa: F401

from engine.ape import APE_MAX_TOKENS, ape_demo_sets, propose_ape
from engine.blackbox import BlackBox
from engine.config import Config, EndpointProfile, RunSettings
from engine.prompts import APE_SYSTEM, PLACEHOLDER_INSTRUCTION, ape_prompt
from engine.runner import Engine
from engine.store import open_history
from engine.wire.events import CandidateScored, Status


@dataclass(frozen=True)
class Demo:
    input: str
    answers: tuple[str, ...]


DEMOS = [Demo(f"in{i}", (f"out{i}",)) for i in range(5)]


# -- pure parts -------------------------------------------------------------------------------------------------


def test_demo_sets_are_seeded_distinct_and_stable_in_n() -> None:
    a = ape_demo_sets(DEMOS, 6, seed=3)
    assert a == ape_demo_sets(DEMOS, 6, seed=3)  # reproducible
    assert a[:4] == ape_demo_sets(DEMOS, 4, seed=3)  # sample i depends on (seed, i) only
    assert a != ape_demo_sets(DEMOS, 6, seed=4)
    seeds = [s for _, s in a]
    assert len(set(seeds)) == 6 and all(0 <= s < 2**31 for s in seeds)
    orders = [tuple(d.input for d in shown) for shown, _ in a]
    assert all(sorted(o) == sorted(d.input for d in DEMOS) for o in orders)  # every demo, shuffled
    assert len(set(orders)) > 1
    subsets = ape_demo_sets(DEMOS, 6, seed=3, subset_size=3)
    assert all(len(shown) == 3 and len(set(shown)) == 3 for shown, _ in subsets)
    plain = ape_demo_sets(DEMOS, 3, seed=3, demo_subsets=False)
    assert all(shown == DEMOS for shown, _ in plain) and len({s for _, s in plain}) == 3


def test_forward_prompt_for_chat_and_completions() -> None:
    raw = ape_prompt(DEMOS[:3], "completions")
    assert raw.startswith("I gave a friend an instruction and three inputs.")
    assert "Input: in0\nOutput: out0" in raw
    assert raw.endswith("The instruction was to")
    chat = ape_prompt(DEMOS[:3], "chat")
    assert chat.endswith("\n\nComplete the sentence: The instruction was to")
    assert chat.count("The instruction was to") == 1
    assert "Input: in2\nOutput: out2" in chat


# -- against an endpoint --------------------------------------------------------------------------------------


def _profile(url: str, **kw: Any) -> EndpointProfile:
    return EndpointProfile(base_url=url, model="fake-model", max_retries=0, **kw)


async def test_propose_ape_asks_n_samples_and_cleans_them(fake: FakeEndpoint) -> None:
    answers = iter([" write the larger animal.\nInput: cat", "", "The instruction was to sort the words",
                    " write the larger animal."])
    fake.propose = lambda body: next(answers)
    got: list[Any] = []
    async with BlackBox(_profile(fake.url)) as bb:
        texts = await propose_ape(bb, DEMOS, 4, 0.9, seed=7, completions=got)
    # Requests run concurrently, so answers reach samples in any order: compare as multisets.
    assert sorted(texts) == sorted(["Write the larger animal.", PLACEHOLDER_INSTRUCTION, "Sort the words.",
                                    "Write the larger animal."])  # duplicates kept
    assert len(got) == 4 and not any(c.cache_hit for c in got)
    bodies = fake.proposals()
    assert len(bodies) == 4
    assert {b["temperature"] for b in bodies} == {0.9}
    assert {b["max_tokens"] for b in bodies} == {APE_MAX_TOKENS}
    assert len({b["seed"] for b in bodies}) == 4
    assert all(b["messages"][0] == {"role": "system", "content": APE_SYSTEM} for b in bodies)
    users = [b["messages"][1]["content"] for b in bodies]
    assert all(u.endswith("Complete the sentence: The instruction was to") for u in users)
    assert len(set(users)) > 1  # different demo orders


async def test_propose_ape_on_a_completions_endpoint(fake: FakeEndpoint) -> None:
    async with BlackBox(_profile(fake.url, api="completions")) as bb:
        texts = await propose_ape(bb, DEMOS[:2], 2, 1.0, seed=0)
    bodies = fake.proposals()
    assert [r["path"] for r in fake.requests] == ["/v1/completions"] * 2
    assert all(b["prompt"].endswith("The instruction was to") and "messages" not in b for b in bodies)
    assert sorted(texts) == sorted(f"Write the answer number {b['seed']}." for b in bodies)


async def test_propose_ape_is_cached_per_seed(fake: FakeEndpoint, tmp_path: Path) -> None:
    history = open_history(tmp_path / "h.db")
    async with BlackBox(_profile(fake.url), history) as bb:
        first = await propose_ape(bb, DEMOS, 3, 1.0, seed=1)
        again: list[Any] = []
        assert await propose_ape(bb, DEMOS, 3, 1.0, seed=1, completions=again) == first
        assert len(fake.requests) == 3 and all(c.cache_hit for c in again)
        other = await propose_ape(bb, DEMOS, 3, 1.0, seed=2)  # the next iteration: fresh samples
        assert len(fake.requests) == 6 and other != first


def test_overrides_are_in_the_cache_key_and_optional(tmp_path: Path) -> None:
    bb = BlackBox(_profile("http://127.0.0.1:9/v1"))
    plain = bb.cache_key("p")
    assert bb.cache_key("p", {}) == plain
    assert bb.cache_key("p", {"temperature": 0.0, "max_tokens": 32, "stop": ["\n\n"]}) == plain  # the profile's
    keys = {plain, bb.cache_key("p", {"seed": 1}), bb.cache_key("p", {"seed": 2}),
            bb.cache_key("p", {"temperature": 1.0}), bb.cache_key("p", {"system": "s"})}
    assert len(keys) == 5
    path, body = bb._body("p", {"temperature": 1.0, "seed": 3, "system": "sys", "max_tokens": 5})
    assert path == "/chat/completions"
    assert body["seed"] == 3 and body["temperature"] == 1.0 and body["max_tokens"] == 5
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "p"}]
    _, body = bb._body("p")
    assert "seed" not in body and body["messages"] == [{"role": "user", "content": "p"}]


# -- through the runner ---------------------------------------------------------------------------------------


def _engine(fake: FakeEndpoint, tmp_path: Path, **endpoints: EndpointProfile) -> Engine:
    config = Config(
        default_endpoint="fake",
        endpoints={"embedded": EndpointProfile(model="smollm2-135m-instruct"), "fake": _profile(fake.url),
                   **endpoints},
    )
    return Engine(config, open_history(tmp_path / "history.db"))


TINY = {"method": "ape", "n_init": 3, "batch_size": 2, "budget_evaluations": 5, "n_dev": 2, "n_test": 2,
        "n_demos": 3}


def test_ape_run_counts_the_proposers_calls(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = _engine(fake, tmp_path)
    events: list[Any] = []

    async def go() -> dict[str, Any]:
        try:
            return await engine.run("larger_animal", RunSettings(**TINY), emit=events.append)
        finally:
            await engine.aclose()

    summary = asyncio.run(go())
    assert summary["status"] == "finished" and summary["evaluations"] == 5
    proposals = fake.proposals()
    assert len(proposals) == 5  # 3 at the start, then 2: one sample per candidate
    assert {p["temperature"] for p in proposals} == {1.0}
    # Every HTTP request (proposals, dev scoring, test scoring) is a paid call of the run.
    assert summary["calls"] == len(fake.requests) > len(proposals)
    run = engine.history.run(summary["run_id"])
    assert run["prompt_tokens"] == 10 * len(fake.requests)
    statuses = [e.message for e in events if isinstance(e, Status)]
    assert "asking fake for 3 instructions (APE)" in statuses
    assert "asking fake for 2 instructions (APE)" in statuses
    cands = engine.history.candidates(summary["run_id"])
    assert all(c["instruction"].startswith("Write the answer number ") and c["z"] is None for c in cands)

    # The same run again: every proposal and every score comes from the cache.
    before = len(fake.requests)
    engine2 = _engine(fake, tmp_path)

    async def again() -> dict[str, Any]:
        try:
            return await engine2.run("larger_animal", RunSettings(**TINY))
        finally:
            await engine2.aclose()

    second = asyncio.run(again())
    assert len(fake.requests) == before and second["calls"] == 0
    assert second["best_instruction"] == summary["best_instruction"]


def test_ape_endpoint_setting_picks_another_proposer(fake: FakeEndpoint, tmp_path: Path) -> None:
    proposer = FakeEndpoint()
    try:
        engine = _engine(fake, tmp_path, proposer=_profile(proposer.url))
        settings = RunSettings(**{**TINY, "budget_evaluations": 3, "ape_endpoint": "proposer"})

        async def go() -> dict[str, Any]:
            try:
                return await engine.run("larger_animal", settings)
            finally:
                await engine.aclose()

        summary = asyncio.run(go())
        assert len(proposer.requests) == 3 and fake.proposals() == []
        assert summary["calls"] == len(proposer.requests) + len(fake.requests)
        with pytest.raises(Exception, match="unknown endpoint"):
            engine.create_run("larger_animal", RunSettings(**{**TINY, "ape_endpoint": "nowhere"}))
    finally:
        proposer.close()


def test_resume_keeps_the_proposers_calls(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = _engine(fake, tmp_path)

    async def go() -> tuple[int, dict[str, Any], int]:
        try:
            cancel = asyncio.Event()
            run_id = engine.create_run("larger_animal", RunSettings(**TINY))

            def on(ev: Any) -> None:
                if isinstance(ev, CandidateScored):
                    cancel.set()  # stop after the first score: 3 proposals paid, 1 candidate scored

            await engine.execute(run_id, emit=on, cancel=cancel)
            paid_before = len(fake.requests)
            return run_id, await engine.resume(run_id), paid_before
        finally:
            await engine.aclose()

    run_id, summary, paid_before = asyncio.run(go())
    assert len(fake.proposals()) == 5
    assert summary["status"] == "finished"
    assert summary["calls"] == len(fake.requests) > paid_before  # nothing lost, nothing counted twice
