"""The quality benchmark's statistics and its parts: the numbers on BENCHMARKS.md's top page come from these.

The intervals must be paired (a method that is uniformly 0.1 better has a tight interval however noisy the tasks
are), two-level (seed luck widens them), and honest about what they cannot say (one task: no interval). A part file
must survive being stopped: a resumed part runs only what it lacks, and refuses other settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import quality  # noqa: E402
from bench.quality_report import bootstrap_ci, markdown, paired_diffs, render, summarise  # noqa: E402


def _rows(scores: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """``{method: {task: [score per seed]}}`` -> benchmark rows."""
    return [{"task": t, "method": m, "seed": s, "test_score": v, "test_contains": min(1.0, v + 0.2),
             "dev_score": v, "evaluations": 10, "calls": 100, "distinct": 5, "wall_s": 1.0}
            for m, tasks in scores.items() for t, vals in tasks.items() for s, v in enumerate(vals)]


def test_a_uniform_gain_gives_a_tight_interval_however_different_the_tasks() -> None:
    base = {"a": [0.1, 0.2, 0.0], "b": [0.9, 0.8, 0.7], "c": [0.5, 0.4, 0.6]}
    rows = _rows({"random": base, "instructzero": {t: [v + 0.1 for v in vs] for t, vs in base.items()}})
    s = summarise(rows, ["instructzero", "random"], list(base))
    mean, low, high = s["diff_ci95"]["random"]["instructzero"]
    assert mean == pytest.approx(0.1)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    assert s["wins_ties_losses"]["random"] == [3, 0, 0]


def test_seed_noise_widens_the_interval_and_a_null_method_straddles_zero() -> None:
    tasks = {f"t{i}": [0.5, 0.5, 0.5] for i in range(6)}
    noisy = {f"t{i}": [0.5 + d for d in ((0.3, -0.3, 0.0) if i % 2 else (-0.2, 0.2, 0.0))] for i in range(6)}
    table = {"x": noisy, "random": tasks}
    diffs = paired_diffs({m: {t: dict(enumerate(v)) for t, v in ts.items()} for m, ts in table.items()},
                         "x", "random", list(tasks))
    mean, low, high = bootstrap_ci(diffs)
    assert mean == pytest.approx(0.0)
    assert low < -0.05 and high > 0.05  # seed luck shows, although every task's mean difference is 0


def test_pairs_are_taken_by_seed_and_a_failed_cell_is_missing_not_zero() -> None:
    rows = _rows({"random": {"a": [0.2, 0.4], "b": [0.5, 0.5]}, "ape": {"a": [0.3, 0.5], "b": [0.6, 0.6]}})
    rows.append({"task": "b", "method": "ape", "seed": 2, "failed": "the run ended failed"})
    s = summarise(rows, ["random", "ape"], ["a", "b"])
    assert s["diff_ci95"]["random"]["ape"][0] == pytest.approx(0.1)
    assert s["n_failed"] == 1
    assert s["per_task"]["b"]["ape"]["n"] == 2


def test_one_task_has_no_interval() -> None:
    assert bootstrap_ci({"a": [0.1, 0.2]}) is None


def test_tables_show_means_differences_share_and_the_old_metric() -> None:
    rows = _rows({"instructzero": {"a": [0.6, 0.6], "b": [0.4, 0.4]}, "random": {"a": [0.5, 0.5], "b": [0.3, 0.3]},
                  "ape": {"a": [0.2, 0.2], "b": [0.2, 0.2]}, "manual": {"a": [1.0, 1.0], "b": [0.0, 0.0]}})
    methods = ["instructzero", "random", "ape", "manual"]
    s = summarise(rows, methods, ["a", "b"])
    assert s["share_of_manual"]["instructzero"] == pytest.approx(1.0)
    assert s["mean_test_contains"]["random"] == pytest.approx(0.6)
    text = render(s, methods, ["a", "b"], "title")
    assert "MEAN TEST" in text and "0.500" in text and "resolvable difference" in text
    md = markdown({"tune": s}, methods, {"tune": "tune (2 tasks)"})
    line = next(x for x in md.splitlines() if "**instructzero**" in x)
    assert "+0.100 [+0.10, +0.10]" in line and "+0.300 [+0.20, +0.40]" in line and "100%" in line


def _args(tmp_path: Path, resume: bool) -> argparse.Namespace:
    return argparse.Namespace(resume=resume, workers=1, ray=None, out=tmp_path)


META = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc", "models": {"generator": "g", "blackbox": "b"},
        "settings": {"n_dev": 10, "budget_evaluations": 10}, "metric": "original", "group": "tune"}


def test_a_resumed_part_runs_only_the_cells_it_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep is replaced here by one that records what it was asked for: the piece under test is the part's
    bookkeeping (the real sweep is tested in tests/integration/test_sweep.py)."""
    asked: list[tuple[list[str], list[str]]] = []
    fail_once = {("t2", "ape")}

    def fake_sweep(tasks: list[str], methods: list[str], seed: int, settings: dict[str, Any], on_row: Any,
                   **_: Any) -> None:
        asked.append((tasks, methods))
        for t in tasks:
            for m in methods:
                if (t, m) in fail_once:
                    fail_once.discard((t, m))
                    on_row({"task": t, "method": m, "seed": seed, "failed": "boom"})
                else:
                    on_row({"task": t, "method": m, "seed": seed, "test_score": 0.5, "test_contains": 0.5,
                            "dev_score": 0.5, "evaluations": 10, "calls": 100, "wall_s": 1.0,
                            "best_instruction": f"{t}/{m}"})

    monkeypatch.setattr(quality, "run_sweep", fake_sweep)
    path = tmp_path / "tune-seed0.json"
    quality.run_part(path, META, ["t1", "t2"], ["random", "ape"], 0, _args(tmp_path, False))
    part = json.loads(path.read_text())
    assert sum("failed" in r for r in part["runs"]) == 1
    with pytest.raises(SystemExit, match="--resume"):
        quality.run_part(path, META, ["t1", "t2"], ["random", "ape"], 0, _args(tmp_path, False))
    quality.run_part(path, META, ["t1", "t2"], ["random", "ape", "manual"], 0, _args(tmp_path, True))
    assert asked[1:] == [(["t2"], ["ape"]), (["t1", "t2"], ["manual"])]  # only the cells it lacks
    part = json.loads(path.read_text())
    cells = sorted((r["task"], r["method"]) for r in part["runs"])
    assert cells == sorted((t, m) for t in ("t1", "t2") for m in ("random", "ape", "manual"))
    assert not any("failed" in r for r in part["runs"])
    assert [s["methods"] for s in part["sittings"]] == [["random", "ape"], ["ape", "manual"]]
    quality.run_part(path, META, ["t1", "t2"], ["random", "ape", "manual"], 0, _args(tmp_path, True))
    assert len(asked) == 3  # complete: nothing run
    with pytest.raises(SystemExit, match="other settings"):
        quality.run_part(path, {**META, "settings": {"n_dev": 4}}, ["t1"], ["random"], 0, _args(tmp_path, True))
