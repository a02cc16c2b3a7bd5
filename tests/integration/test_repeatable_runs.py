"""Repeatable runs: a run records what made it, and `iz run --like RUN_ID` repeats it exactly.

Real parts throughout: the `iz` command in a subprocess, the real engine process, the bundled generator and the
embedded llama.cpp server. The same seed on the same models must give the same candidates (greedy decoding, a
seeded Sobol start and seeded BO), and the repeat must be answered entirely from the response cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine.store import open_history

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

IZ = [sys.executable, "-m", "iz_tui"]


def _iz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IZ, *args], capture_output=True, text=True, timeout=500, env=dict(os.environ))


def test_like_repeats_a_run_with_the_same_candidates() -> None:
    first = _iz("run", "sum", "--budget", "3", "--init", "2", "--batch", "1", "--dev", "2", "--test", "2",
                "--demos", "2", "--seed", "5", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    a = json.loads(first.stdout)

    h = open_history()
    row = h.run(a["run_id"])
    made = row["provenance"]
    assert made["seed"] == 5 and made["version"]
    assert made["generator"]["sha256"] and len(made["generator"]["sha256"]) == 64, made["generator"]
    assert made["blackbox"]["sha256"] and made["blackbox"]["endpoint"] == "embedded"

    second = _iz("run", "--like", str(a["run_id"]), "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    b = json.loads(second.stdout)
    assert b["run_id"] != a["run_id"] and b["task"] == "sum" and b["method"] == a["method"]
    again = h.run(b["run_id"])
    assert again["settings"] == row["settings"] and again["endpoint"] == row["endpoint"]
    assert again["provenance"]["generator"]["sha256"] == made["generator"]["sha256"]

    def cands(run_id: int) -> list[tuple[str, list[float] | None, float]]:
        return [(c["instruction"], c["z"], c["dev_score"]) for c in h.candidates(run_id)]

    assert cands(b["run_id"]) == cands(a["run_id"]), "same seed, same models: the same candidates"
    assert b["calls"] == 0 and b["calls_saved"] > 0, "the repeat is answered from the response cache"
    assert b["best_instruction"] == a["best_instruction"] and b["test_score"] == a["test_score"]

    # An option given with --like wins over the stored one.
    seeded = _iz("run", "--like", str(a["run_id"]), "--seed", "6", "--budget", "2", "--json")
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    c = h.run(json.loads(seeded.stdout)["run_id"])
    assert c["settings"]["seed"] == 6 and c["settings"]["budget_evaluations"] == 2
    assert c["settings"]["n_dev"] == 2 and c["provenance"]["seed"] == 6

    # `iz show` and the JSON export say what made the run.
    shown = _iz("show", str(a["run_id"]))
    assert shown.returncode == 0 and "made with generator" in shown.stdout
    exported = json.loads(_iz("show", str(a["run_id"]), "--json").stdout)
    assert exported["runs"][0]["provenance"]["generator"]["sha256"] == made["generator"]["sha256"]


def test_like_and_resume_together_is_a_usage_error() -> None:
    out = _iz("run", "--like", "1", "--resume", "1")
    assert out.returncode == 2 and "give one of them" in out.stderr and "Traceback" not in out.stderr
