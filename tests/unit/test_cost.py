"""Cost: endpoint prices, the estimate before a run, what a run paid, and the money budget (``--max-cost``).

Why these tests: a prompt engineer decides whether to start a run from the estimate, and trusts the cap to stop
it. So they pin the price rules (a local endpoint is free and says so; explicit prices win, even on a local URL
that may be a proxy to a paid API), the estimate against a count made by hand from the task's own prompts, that
only calls that went over the network are paid (a cached answer costs nothing, on a second run too), that the cap
stops a run on the wire with everything scored kept, and that ``iz run --dry-run`` prints the numbers without
recording a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes

from engine import paths
from engine.config import PRICES_UNKNOWN, EndpointProfile, RunSettings
from engine.cost import TYPICAL_INSTRUCTION, estimate_run, run_cost
from engine.errors import ConfigError
from engine.runner import Engine
from engine.store import open_history
from engine.tasks import load_task, make_splits
from engine.usage import Usage
from engine.wire.events import CandidateScored, Event, RunStarted

TASK = "larger_animal"
REMOTE = "https://api.example.invalid/v1"
#: The fake endpoint reports 10 prompt and 3 completion tokens per answer: at these prices one call costs $0.01.
PRICED = {"price_input": 1000.0, "price_output": 0.0}


# -- prices ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["embedded", "http://127.0.0.1:8080/v1", "http://localhost:11434/v1",
                                 "http://[::1]:8000/v1"])
def test_a_local_endpoint_is_free(url: str) -> None:
    profile = EndpointProfile(base_url=url)
    assert profile.local and profile.prices == (0.0, 0.0)


def test_a_remote_endpoint_without_prices_is_unknown_and_given_prices_win() -> None:
    assert EndpointProfile(base_url=REMOTE).prices is None
    assert not EndpointProfile(base_url="http://127.0.0.2.example.com/v1").local
    assert EndpointProfile(base_url=REMOTE, price_input=0.15, price_output=0.6).prices == (0.15, 0.6)
    # A local URL may be a proxy (LiteLLM, say) in front of a paid API: its own prices count.
    assert EndpointProfile(base_url="http://localhost:4000/v1", price_input=3, price_output=15).prices == (3, 15)


@pytest.mark.parametrize("bad", [{"price_input": 1.0}, {"price_output": 1.0}, {"price_input": -1, "price_output": 1}])
def test_prices_come_in_pairs_and_are_not_negative(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        EndpointProfile(base_url=REMOTE, **bad)


# -- the estimate ---------------------------------------------------------------------------------------------
def _by_hand(text: str) -> int:
    return max(1, round(len(text) / 4))  # about four characters a token


def test_the_estimate_matches_a_count_by_hand() -> None:
    task = load_task("sum")  # default template, no system prompt, short numeric answers
    settings = RunSettings(method="random", budget_evaluations=3, n_demos=1, n_dev=2, n_test=1, seed=0)
    profile = EndpointProfile(base_url=REMOTE, price_input=0.15, price_output=0.6)
    splits = make_splits(task, n_demos=1, n_dev=2, n_test=1, seed=0)

    def prompt(ex: Any) -> int:
        return _by_hand(f"Instruction: {TYPICAL_INSTRUCTION}\n\nInput: {ex.input}\n\nOutput:")

    dev_prompt = sum(prompt(ex) for ex in splits.dev)
    dev_answer = sum(_by_hand(ex.output) for ex in splits.dev)
    want_prompt = 3 * dev_prompt + prompt(splits.test[0])
    want_completion = 3 * dev_answer + _by_hand(splits.test[0].output)
    est = estimate_run(task, settings, profile)
    assert (est.calls, est.prompt_tokens, est.completion_tokens) == (3 * 2 + 1, want_prompt, want_completion)
    assert est.money == pytest.approx((want_prompt * 0.15 + want_completion * 0.6) / 1e6)
    assert not est.local and est.capped_by is None

    # The manual method scores its instructions; APE pays one proposer call per evaluation on top.
    manual = estimate_run(task, settings.model_copy(update={"method": "manual"}), profile, n_instructions=2)
    assert manual.calls == 2 * 2 + 1
    ape = estimate_run(task, settings.model_copy(update={"method": "ape"}), profile)
    assert ape.calls == 3 * 2 + 1 + 3 and ape.prompt_tokens > want_prompt
    # A budget that stops the run earlier cuts the estimate to it.
    capped = estimate_run(task, settings.model_copy(update={"budget_calls": 4}), profile)
    assert capped.calls == 4 and capped.capped_by == "calls" and capped.money < est.money
    # Locally it is free; without prices the money is unknown.
    local = estimate_run(task, settings, EndpointProfile())
    assert local.local and local.money == 0.0 and local.money_text() == "0 (local endpoint)"
    unknown = estimate_run(task, settings, EndpointProfile(base_url=REMOTE))
    assert unknown.money is None and unknown.money_text() == PRICES_UNKNOWN


# -- what is paid ---------------------------------------------------------------------------------------------
def test_cached_and_reused_answers_cost_nothing() -> None:
    paid = {"cache_hit": False, "prompt_tokens": 100, "completion_tokens": 10}
    cached = {**paid, "cache_hit": True}
    u = Usage.of_answers([paid, cached, cached])
    assert (u.calls, u.calls_saved, u.tokens, u.paid_tokens) == (1, 2, 330, 110)
    assert u.cost((1.0, 10.0)) == pytest.approx((100 * 1.0 + 10 * 10.0) / 1e6)
    assert u.cost(None) is None
    assert Usage.of_answers([cached]).cost((5.0, 5.0)) == 0.0
    assert Usage.reused(20).cost((5.0, 5.0)) == 0.0
    assert Usage.of_row(u.as_dict()) == u  # stored per candidate and per run, rebuilt on resume


def _priced_engine(fake: FakeEndpoint, tmp_path: Path, script: list[str]) -> Engine:
    engine = engine_with_fakes(fake, tmp_path, FakeGenerator(script))
    engine.config.endpoints["fake"] = EndpointProfile(base_url=fake.url, model="fake-model", max_retries=0, **PRICED)
    return engine


def _run(engine: Engine, settings: RunSettings, events: list[Event]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await engine.run(TASK, settings, emit=events.append)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def _settings(**kw: Any) -> RunSettings:
    base: dict[str, Any] = {"method": "random", "intrinsic_dim": 2, "n_soft_tokens": 1, "n_dev": 2, "n_test": 3,
                            "n_demos": 2}
    return RunSettings(**{**base, **kw})


SCRIPT = [f"Write answer number {i}." for i in range(30)]


@pytest.mark.usefixtures("no_real_generator")
def test_a_second_identical_run_costs_nothing(fake: FakeEndpoint, tmp_path: Path) -> None:
    settings = _settings(budget_evaluations=2, n_init=2, batch_size=2)
    first = _run(_priced_engine(fake, tmp_path, SCRIPT), settings, [])
    second = _run(_priced_engine(fake, tmp_path, SCRIPT), settings, [])
    assert first["calls"] == 2 * 2 + 3 and first["cost"] == pytest.approx(7 * 0.01)
    assert second["calls"] == 0 and second["tokens"] == first["tokens"] and second["cost"] == 0.0


@pytest.mark.usefixtures("no_real_generator")
def test_the_cost_budget_stops_the_run_and_keeps_what_it_scored(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = _priced_engine(fake, tmp_path, SCRIPT)
    events: list[Event] = []
    summary = _run(engine, _settings(budget_evaluations=10, n_init=5, batch_size=5, budget_cost=0.05), events)
    # Each evaluation pays 2 calls of $0.01: after 3 the run has spent $0.06 >= $0.05 and stops before a 4th.
    assert summary["status"] == "stopped" and summary["stop_reason"] == "cost"
    assert summary["evaluations"] == 3 and summary["cost"] == pytest.approx(0.06)
    assert len(fake.requests) == 6  # no test scoring after a money budget stops the run
    run = engine.history.run(summary["run_id"])
    scored = engine.history.candidates(summary["run_id"], status="scored")
    assert [c["instruction"] for c in scored] == SCRIPT[:3]  # everything scored so far is kept
    assert run_cost(run) == pytest.approx(0.06) and run["paid_prompt_tokens"] == 60
    costs = [e.cost for e in events if isinstance(e, CandidateScored)]
    assert costs == pytest.approx([0.02, 0.04, 0.06])
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.estimate is not None and started.estimate["capped_by"] == "cost"
    # Resuming rebuilds the spent money from the stored rows: still over the cap, nothing more is asked.
    again = asyncio.run(engine.resume(summary["run_id"]))
    assert again["status"] == "stopped" and again["cost"] == pytest.approx(0.06) and len(fake.requests) == 6


@pytest.mark.usefixtures("no_real_generator")
def test_the_test_score_is_skipped_when_it_would_pass_the_cap(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = _priced_engine(fake, tmp_path, SCRIPT)
    summary = _run(engine, _settings(budget_evaluations=2, n_init=2, batch_size=2, budget_cost=0.05), [])
    # $0.04 spent; the 3 test calls would bring it to $0.07.
    assert summary["status"] == "stopped" and summary["stop_reason"] == "cost" and summary["test_score"] is None
    assert summary["evaluations"] == 2 and len(fake.requests) == 4


def test_a_cost_budget_needs_prices(tmp_path: Path) -> None:
    from engine.config import Config

    engine = Engine(Config(endpoints={"remote": EndpointProfile(base_url=REMOTE, model="m")}),
                    open_history(tmp_path / "history.db"))
    with pytest.raises(ConfigError) as info:
        engine.create_run(TASK, {"budget_cost": 1.0}, endpoint="remote")
    assert "price_input" in info.value.fix and "[endpoints.remote]" in info.value.fix
    assert engine.history.runs() == []


# -- iz run --dry-run -----------------------------------------------------------------------------------------
def _iz(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "iz_tui", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_dry_run_prints_the_estimate_and_records_nothing() -> None:
    paths.config_file().write_text(
        f'[endpoints.paid]\nbase_url = "{REMOTE}"\nmodel = "m"\nprice_input = 0.15\nprice_output = 0.6\n')
    out = _iz("run", TASK, "--dry-run", "--endpoint", "paid", "--budget", "4", "--init", "2", "--batch", "2",
              "--dev", "3", "--test", "5")
    assert out.returncode == 0, out.stderr
    settings = RunSettings(budget_evaluations=4, n_init=2, batch_size=2, n_iterations=1, n_dev=3, n_test=5)
    est = estimate_run(load_task(TASK), settings,
                       EndpointProfile(base_url=REMOTE, model="m", price_input=0.15, price_output=0.6))
    assert est.calls == 4 * 3 + 5
    assert f"≤ {est.calls}" in out.stdout and f"~{est.tokens:,}" in out.stdout
    assert f"${est.money:.4f}" in out.stdout
    local = _iz("run", TASK, "--dry-run", "--json")
    assert local.returncode == 0, local.stderr
    data = json.loads(local.stdout)
    assert data["local"] is True and data["money"] == 0.0 and data["calls"] == 150 * 20 + 100
    assert "0 (local endpoint)" in _iz("run", TASK, "--dry-run").stdout
    assert not paths.history_db().exists() or open_history().runs() == []


def test_the_live_screen_shows_spent_against_the_estimate() -> None:
    from iz_tui.run_events import RunTotals

    totals = RunTotals(budget=10)
    assert totals.versus_estimate() is None  # an older engine sends no estimate: nothing is made up
    totals.estimate = {"calls": 60, "money": 0.05, "local": False}
    totals.update({"evaluations": 3, "calls": 15, "calls_saved": 2, "cost": 0.0125})
    assert totals.versus_estimate() == "spent 15 of ≤60 calls estimated · $0.0125 of ~$0.0500"
    totals.estimate = {"calls": 60, "money": 0.0, "local": True}
    assert totals.versus_estimate() == "spent 15 of ≤60 calls estimated · free: local endpoint"
    totals.estimate = {"calls": 60, "money": None, "local": False}
    assert "cost unknown" in (totals.versus_estimate() or "")
