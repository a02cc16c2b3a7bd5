"""The TUI's form values without a terminal: budgets, presets, the run request and its checks, the compare pair."""

from __future__ import annotations

from engine.config import RunSettings
from iz_tui.formatting import paid_calls
from iz_tui.requests import (
    FIELDS,
    PRESET_LABELS,
    PRESETS,
    Budget,
    RunRequest,
    build_request,
    compare_pair,
    estimate,
    parse_budget,
    parse_instructions,
    preset_of,
    stored_budget,
)


def test_budget_settings_use_the_engines_arithmetic() -> None:
    b = Budget(10, 5, 5, 5, 10)
    assert b.settings() == {"budget_evaluations": 10, "n_init": 5, "batch_size": 5, "n_iterations": 1,
                            "n_dev": 5, "n_test": 10}
    for evals, init, batch in ((10, 5, 5), (11, 5, 5), (150, 25, 25), (3, 5, 2), (7, 7, 3)):
        assert Budget(evals, init, batch, 1, 0).iterations == RunSettings.iterations_for(evals, init, batch)
    # the settings a budget yields spend exactly that budget in the engine
    s = RunSettings(**Budget(12, 4, 3, 2, 0).settings())
    assert s.evaluations == 12 and s.n_iterations == 3


def test_presets() -> None:
    assert PRESETS["quick"] == Budget(10, 5, 5, 5, 10)
    assert PRESETS["paper"] == Budget(150, 25, 25, 20, 100)  # the paper's setting = the run defaults
    assert PRESETS["paper"] == Budget.of(RunSettings())
    assert PRESET_LABELS == {"quick": "quick: 10 evals (1-3 min)", "paper": "paper: 150 evals (25+5×25)",
                             "custom": "custom"}
    assert preset_of(Budget(150, 25, 25, 20, 100)) == "paper"
    assert preset_of(Budget(30, 5, 5, 5, 10)) == "custom"
    assert preset_of(None) == "custom"


def test_parse_the_typed_numbers() -> None:
    values = {attr: str(getattr(PRESETS["quick"], attr)) for attr, _ in FIELDS}
    assert parse_budget(values) == PRESETS["quick"]
    assert parse_budget({**values, "n_dev": " 7 "}) == Budget(10, 5, 5, 7, 10)
    assert parse_budget({**values, "n_dev": "7.5"}) is None
    assert parse_budget({**values, "n_test": ""}) is None
    assert parse_instructions("  a \n\n b\n   \n") == ["a", "b"]


def test_build_request_for_an_optimiser() -> None:
    req = build_request("larger_animal", "instructzero", "embedded", PRESETS["quick"], n_examples=195)
    assert isinstance(req, RunRequest)
    assert req.settings == {"method": "instructzero", **PRESETS["quick"].settings()}
    assert req.budget == 10 and req.instructions == ()


def test_build_request_refuses_in_words() -> None:
    quick = PRESETS["quick"]
    assert build_request(None, "instructzero", "embedded", quick) == "pick a task first"
    assert "whole numbers" in str(build_request("t", "random", "embedded", None))
    assert "at least 1" in str(build_request("t", "random", "embedded", Budget(10, 0, 5, 5, 10)))
    assert "at least 1" in str(build_request("t", "random", "embedded", Budget(10, 5, 5, 5, -1)))
    assert "cannot exceed" in str(build_request("t", "random", "embedded", Budget(10, 50, 5, 5, 10)))
    # dev + test + demos must fit in the task
    assert isinstance(build_request("t", "ape", "embedded", quick, n_examples=20), RunRequest)
    refused = build_request("t", "ape", "embedded", quick, n_examples=19)
    assert "t has 19 examples" in str(refused) and "5 demos" in str(refused)
    assert "3 demos" in str(build_request("t", "ape", "embedded", quick, n_examples=17, n_demos=3))
    assert isinstance(build_request("t", "ape", "embedded", quick, n_examples=18, n_demos=3), RunRequest)


def test_build_request_for_the_manual_method() -> None:
    assert "type at least one" in str(build_request("t", "manual", "e", PRESETS["quick"], []))
    req = build_request("t", "manual", "e", PRESETS["quick"], ["a", "b"])
    assert isinstance(req, RunRequest)
    assert req.settings == {"method": "manual", "n_dev": 5, "n_test": 10}
    assert req.instructions == ("a", "b") and req.budget == 2
    req = build_request("t", "manual", "e", None, ["a"])  # the numbers are hidden for manual: not required
    assert isinstance(req, RunRequest) and req.settings == {"method": "manual"}


def test_estimate() -> None:
    assert estimate("instructzero", PRESETS["quick"]) == "≤ 60 black-box calls (10×5 dev + 10 test)"
    assert estimate("random", None) == "[red]numbers only[/]"
    assert estimate("manual", None, 1) == "1 instruction to score"
    assert estimate("manual", PRESETS["quick"], 3) == "3 instructions to score"


def test_stored_budget_reads_a_history_row() -> None:
    row = {"settings": {"method": "random", "n_init": 4, "n_iterations": 2, "batch_size": 3, "instructions": []},
           "endpoint": {"name": "embedded", "base_url": "embedded", "model": "smollm2-135m-instruct"}}
    assert stored_budget(row) == 10
    row["settings"] = {**row["settings"], "budget_evaluations": 7}
    assert stored_budget(row) == 7
    row["settings"] = {"method": "manual", "instructions": ["a", "b", "c"]}
    assert stored_budget(row) == 3
    assert stored_budget({"settings": {"no_such_setting": 1}, "endpoint": {}}) == 0


def test_compare_pair() -> None:
    runs = [{"id": 5, "task": "b"}, {"id": 4, "task": "a"}, {"id": 3, "task": "b"}, {"id": 2, "task": "a"}]
    assert compare_pair(runs) == (5, 3)  # the newest, then the newest other run of the same task
    assert compare_pair(runs, [4]) == (4, 2)
    assert compare_pair(runs, [2, 5]) == (2, 5)  # two preferred runs (a selection across runs)
    assert compare_pair(runs, [9]) == (5, 3)  # unknown ids are ignored
    assert compare_pair(runs[:1]) is None
    assert compare_pair([{"id": 1, "task": "a"}, {"id": 2, "task": "b"}]) == (1, 2)


def test_paid_calls_is_worded_once() -> None:
    assert paid_calls(30, 30) == "30 calls · 30 saved by cache"
    assert paid_calls(1, 0) == "1 call · 0 saved by cache"
