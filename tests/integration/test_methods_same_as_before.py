"""Moving the methods into plug-ins (engine/methods/) changed no behaviour: the same seed on the same models gives
the same candidates, scores and test score as the code before the move.

The reference, tests/data/methods_before_plugins.json, was recorded by this test (``RECORD_METHODS_REFERENCE=1``) on the
commit before engine/methods/ existed, with the bundled SmolLM2 as generator and as embedded black box. Real parts:
the engine core, the bundled generator, the llama.cpp server over HTTP and a SQLite history.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.runner import Engine
from engine.store import open_history

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "methods_before_plugins.json"
TASK = "larger_animal"
TINY = {"n_init": 2, "batch_size": 2, "budget_evaluations": 4, "n_dev": 3, "n_test": 3, "n_demos": 3, "seed": 3}
MANUAL = ["Write the larger of the two animals.", "Say banana."]
METHODS = ["instructzero", "random", "ape", "ape_local", "manual"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    mp.setenv("IZ_HOME", str(tmp_path_factory.mktemp("methods_home")))
    try:
        engine = Engine(history=open_history())

        async def go() -> dict[str, Any]:
            out = {}
            try:
                for method in METHODS:
                    run_id = engine.create_run(TASK, {**TINY, "method": method},
                                               instructions=MANUAL if method == "manual" else ())
                    summary = await engine.execute(run_id)
                    cands = engine.history.candidates(run_id)
                    out[method] = {
                        "candidates": [[c["instruction"], c["dev_score"], c["iteration"],
                                        None if c["z"] is None else [round(v, 9) for v in c["z"]]] for c in cands],
                        "best": summary["best_instruction"], "test_score": summary["test_score"],
                        "evaluations": summary["evaluations"],
                    }
            finally:
                await engine.aclose()
            return out

        return asyncio.run(go())
    finally:
        mp.undo()


def test_record_or_compare(outcomes: dict[str, Any]) -> None:
    if os.environ.get("RECORD_METHODS_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps(outcomes, indent=1) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {REFERENCE.name}: commit it, then run again without RECORD_METHODS_REFERENCE")
    assert REFERENCE.is_file(), f"{REFERENCE} is missing: record it with RECORD_METHODS_REFERENCE=1 on a known-good commit"


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_candidates_and_scores(method: str, outcomes: dict[str, Any]) -> None:
    before = json.loads(REFERENCE.read_text(encoding="utf-8"))[method]
    now = outcomes[method]
    assert now["candidates"] == before["candidates"]
    assert (now["best"], now["test_score"], now["evaluations"]) == (before["best"], before["test_score"],
                                                                    before["evaluations"])
