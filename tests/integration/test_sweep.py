"""`iz sweep` for real: 2 tasks x 2 methods x 2 seeds on 2 workers against the embedded llama.cpp server, once on
a local Ray and once on local worker processes; the bundled SmolLM2 writes the `random` cells' instructions.

Both sweeps must record every cell as an ordinary, finished run, live (another connection sees a run's scored
candidates before its cell ends), with each worker loading its generator once however many cells it runs; and
the two backends must record the same instructions and scores (greedy decoding, the same seeds).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.store import open_history
from engine.sweep.driver import SweepDriver, SweepEvent
from engine.sweep.report import sweep_table
from engine.sweep.spec import SweepSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SPEC = dict(tasks=["sum", "antonyms"], methods=["random", "manual"], seeds=[0, 1],
            settings={"budget_evaluations": 2, "n_init": 2, "batch_size": 1, "n_dev": 3, "n_test": 3, "n_demos": 3},
            manual_default=["Write the answer."])


def _sweep(home: Path, monkeypatch: pytest.MonkeyPatch, ray: str | None) -> tuple[dict[str, Any], list[SweepEvent],
                                                                                    list[int]]:
    home.mkdir(parents=True)
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    events: list[SweepEvent] = []
    live: list[int] = []

    def on_event(ev: SweepEvent) -> None:
        events.append(ev)
        if ev.kind == "cell_progress" and ev.data["type"] == "candidate_scored" and ev.cell is not None:
            # What the TUI's history screen would read at this moment, on its own connection.
            other = open_history()
            try:
                live.append(len(other.candidates(ev.cell["run_id"], status="scored")))
            finally:
                other.close()

    driver = SweepDriver(workers=2, ray=ray, on_event=on_event)
    result = driver.run(driver.create(SweepSpec.build(**SPEC)))
    return result, events, live


def _check(result: dict[str, Any], events: list[SweepEvent], live: list[int]) -> dict[tuple[Any, ...], Any]:
    assert result["status"] == "finished", [(c["task"], c["method"], c["error"]) for c in result["cells"]]
    cells = result["cells"]
    assert len(cells) == 8 and {c["status"] for c in cells} == {"finished"}
    h = open_history()
    recorded = {}
    for c in cells:
        run = h.run(c["run_id"])
        assert run["status"] == "finished" and run["test_score"] is not None
        assert run["method"] == c["method"] and run["settings"]["seed"] == c["seed"]
        assert run["evaluations"] == (2 if c["method"] == "random" else 1)
        cands = h.candidates(c["run_id"], status="scored")
        assert cands and all(len(h.outputs(x["id"], "dev")) == 3 or x["duplicate_of"] for x in cands)
        recorded[(c["task"], c["method"], c["seed"])] = (run["best_instruction"], run["best_dev_score"],
                                                          run["test_score"], [x["instruction"] for x in cands])
    assert {r["id"] for r in h.runs()} >= {c["run_id"] for c in cells}  # listed like any other run
    h.close()
    assert live and all(n >= 1 for n in live)  # every scored candidate was in the history as it was announced
    # Two workers, neither of them this process; each loaded its generator at most once.
    starts = [e for e in events if e.kind == "cell_started"]
    workers = {e.data["worker"] for e in starts}
    assert len(workers) <= 2 and os.getpid() not in {e.data["pid"] for e in starts}
    worker_of = {e.cell["id"]: e.data["worker"] for e in starts if e.cell is not None}
    # a load shows a status line a second: count the cells that showed one
    loaded = {e.cell["id"] for e in events if e.kind == "cell_progress" and e.cell is not None
              and e.data["type"] == "status" and "preparing generator" in e.data["message"]}
    loads = Counter(worker_of[cell] for cell in loaded)
    random_cells = sum(c["method"] == "random" for c in cells)
    assert loads and max(loads.values()) == 1 and sum(loads.values()) < random_cells
    table = sweep_table(cells)
    assert table.tasks == ["sum", "antonyms"] and all(table.stat(m, t).n == 2 for m in table.methods
                                                      for t in table.tasks)
    return recorded


def test_the_same_sweep_on_local_ray_and_on_local_processes(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="Ray is the optional extra instructzero[ray] (the set-up installs it)")
    on_ray = _check(*_sweep(tmp_path / "ray", monkeypatch, "local"))
    on_processes = _check(*_sweep(tmp_path / "local", monkeypatch, None))
    assert on_ray == on_processes
