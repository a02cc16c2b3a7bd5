"""The quality benchmark's DSPy GEPA baseline (bench/quality_dspy.py), one real small cell.

A tiny task imported into the test's IZ_HOME, GEPA on the bundled SmolLM2-135M (quick; what it proposes does not
matter here), then the engine's manual run that scores the winner. What must hold whatever the model writes: every
request DSPy makes goes through the counting proxy, GEPA stops at the call cap (it may finish the iteration it is
in), and the row has what bench/quality.py's rows have. Skipped without the optional extra (``.[dspy]``).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("dspy", reason="DSPy is the optional extra instructzero[dspy] (bench-only)")
pytest.importorskip("gepa", reason="GEPA is the optional extra instructzero[dspy] (bench-only)")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is a folder of scripts
PAIRS = [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
         ("open", "closed"), ("early", "late"), ("rich", "poor"), ("wet", "dry"), ("loud", "quiet")]


def test_a_gepa_cell_is_capped_at_the_endpoint_and_scored_by_the_engine(embedded_server: object,
                                                                       iz_home: Path) -> None:
    from bench.quality_dspy import METHOD, run_gepa_cell
    from engine.tasks.importers import import_task

    data = iz_home / "opposites.jsonl"
    data.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in PAIRS), encoding="utf-8")
    import_task(data, name="opposites", metric="contains")
    max_calls, n_dev, minibatch = 12, 3, 3
    settings = {"n_demos": 5, "n_dev": n_dev, "n_test": 3, "budget_evaluations": 10, "n_init": 5, "batch_size": 5,
                "n_iterations": 1}
    log = io.StringIO()
    row = run_gepa_cell("opposites", 0, settings, blackbox="smollm2-135m-instruct", max_calls=max_calls, log=log)
    print(log.getvalue(), row)

    assert row["method"] == METHOD and row["engine_method"] == "manual" and row["task"] == "opposites"
    # Counted at the endpoint: every metric call is one request, the reflection's are the rest; GEPA stops once
    # the endpoint has seen the cap, at most one iteration (two minibatches and a dev evaluation) past it.
    assert row["calls"] >= max_calls
    assert row["gepa_metric_calls"] <= row["calls"] == row["gepa_metric_calls"] + row["reflection_calls"]
    assert row["calls"] <= max_calls + row["reflection_calls"] + 2 * minibatch + n_dev
    assert row["calls_failed"] == 0
    assert isinstance(row["test_score"], float) and 0.0 <= row["test_score"] <= 1.0
    assert row["best_instruction"].strip()
    assert row["evaluations"] >= 1 and row["distinct"] <= row["candidates"]
    # The winner was scored by an ordinary engine run on the same splits: dev (3) and test (3), nothing else.
    assert 0 < row["scoring_calls"] <= n_dev + 3
    assert "[dspy_gepa]" in log.getvalue()
