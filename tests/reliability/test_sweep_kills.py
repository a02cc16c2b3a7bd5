"""Sweeps under kills: a worker SIGKILLed mid-cell is replaced and its cell retried; the driver (`iz sweep`)
SIGKILLed mid-sweep is resumed with `--resume`, and only unfinished cells run. Neither pays a finished call twice.

The black box is the deterministic counting endpoint of these tests (what is tested is the sweep's bookkeeping,
not the model); the methods are APE and manual, which need no local model. The workers are real: local worker
processes, or actors on a local Ray started for the sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_fakes import (
    FakeOpenAI,
    cached_ids,
    check_integrity,
    children,
    engine_env,
    finished_keys,
    sigkill,
    wait_gone,
    write_config,
)

from engine.store import open_history
from engine.sweep.driver import SweepDriver, SweepEvent
from engine.sweep.spec import SweepSpec

pytestmark = pytest.mark.timeout(600)

IZ = [sys.executable, "-m", "iz_tui"]
TASKS = ["larger_animal", "sum"]
INSTRUCTIONS = ["Name the larger animal.", "Write the bigger one."]
SETTINGS = {"budget_evaluations": 3, "n_init": 2, "batch_size": 1, "n_dev": 4, "n_test": 4, "n_demos": 2}
CLI_SETTINGS = ["--budget", "3", "--init", "2", "--batch", "1", "--dev", "4", "--test", "4", "--demos", "2"]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


@pytest.fixture
def home(tmp_path: Path, fake: FakeOpenAI, _sandbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    # At most 8 requests in flight (the default is 32: a whole dev set at once): the kills and Ctrl-C below aim at
    # a sweep in progress, which 32 at once against an instant fake can finish first.
    write_config(h, fake.url, extra="concurrency = 8\n")
    monkeypatch.setenv("IZ_HOME", str(h))
    monkeypatch.setenv("IZ_CONFIG", str(h / "config.toml"))
    return h


def _spec(seeds: list[int]) -> SweepSpec:
    return SweepSpec.build(tasks=TASKS, methods=["ape", "manual"], seeds=seeds, settings=SETTINGS,
                           manual_default=INSTRUCTIONS)


def _runs_whole(db: Path, sweep_id: int) -> list[dict[str, Any]]:
    """Every cell finished, its run finished with a test score and no candidate written twice."""
    h = open_history(db)
    try:
        cells = h.sweep_cells(sweep_id)
        for c in cells:
            assert c["status"] == "finished", c
            run = h.run(c["run_id"])
            assert run["status"] == "finished" and run["test_score"] is not None, run
            positions = [x["position"] for x in h.candidates(c["run_id"])]
            assert len(positions) == len(set(positions)), f"run {c['run_id']} has a candidate twice"
        return cells
    finally:
        h.close()


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_retried(home: Path, fake: FakeOpenAI,
                                                                    backend: str) -> None:
    if backend == "ray":
        pytest.importorskip("ray", reason="Ray is the optional extra instructzero[ray] (the set-up installs it)")
    db = home / "history.db"
    pids: dict[int, int] = {}
    events: list[SweepEvent] = []
    killed: dict[str, Any] = {}

    def on_event(ev: SweepEvent) -> None:
        events.append(ev)
        if ev.kind == "cell_started":
            pids[ev.cell["id"]] = ev.data["pid"]  # type: ignore[index]
        if (not killed and ev.kind == "cell_progress" and ev.data["type"] == "candidate_scored"
                and ev.cell["method"] == "ape"):  # type: ignore[index]
            # In the driver's thread, between two replayed messages: what the store holds now is finished.
            killed.update(cell=ev.cell, pid=pids[ev.cell["id"]], cached=cached_ids(db),  # type: ignore[index]
                          mark=fake.mark())
            sigkill(killed["pid"])

    driver = SweepDriver(workers=2, ray="local" if backend == "ray" else None, on_event=on_event)
    result = driver.run(driver.create(_spec([0])))

    assert killed, "no APE candidate was scored"
    assert result["status"] == "finished", [(c["status"], c["error"]) for c in result["cells"]]
    died = [e for e in events if e.kind == "worker_died"]
    assert len(died) == 1 and died[0].data["retry"] and died[0].cell["id"] == killed["cell"]["id"]  # type: ignore[index]
    cells = _runs_whole(db, result["id"])
    retried = next(c for c in cells if c["id"] == killed["cell"]["id"])
    assert retried["attempts"] == 2 and retried["error"] is None
    # The cell went to a new worker (the killed one is gone for good) ...
    assert wait_gone([killed["pid"]]) == []
    started = [e.data["pid"] for e in events if e.kind == "cell_started" and e.cell["id"] == retried["id"]]  # type: ignore[index]
    assert len(started) == 2 and started[1] != killed["pid"]
    # ... and asked nothing that had finished before the kill.
    again = [r for r in fake.since(killed["mark"]) if r.cache_id in killed["cached"]]
    assert again == [], f"{len(again)} finished calls were paid again"
    check_integrity(db)


def test_iz_sweep_killed_then_resumed_runs_only_unfinished_cells(home: Path, fake: FakeOpenAI) -> None:
    db = home / "history.db"
    env = engine_env(home)
    args = [*IZ, "sweep", "--tasks", ",".join(TASKS), "--methods", "ape,manual", "--seeds", "0-1", "--workers", "2",
            *CLI_SETTINGS]
    for text in INSTRUCTIONS:
        args += ["--instruction", text]
    mark = fake.mark()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []

    def driver() -> int:
        workers.extend(p for p in children(proc.pid))
        return proc.pid

    # About half-way (a whole sweep asks ~120): the answers delivered before are stored first, then the kill.
    fake.kill_at_request(60, driver, db, mark=mark)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == -9, err[-3000:]
    assert len(workers) == 2
    assert wait_gone(workers) == [], "the workers outlived their driver"

    check_integrity(db)
    h = open_history(db)
    (sweep,) = h.sweeps()
    assert sweep["status"] == "running"  # as the kill left it
    before = {c["id"]: c for c in h.sweep_cells(sweep["id"])}
    done_before = {i: (c["run_id"], [(x["id"], x["instruction"], x["dev_score"]) for x in h.candidates(c["run_id"])])
                   for i, c in before.items() if c["status"] == "finished"}
    h.close()
    assert 0 < len(done_before) < len(before), [c["status"] for c in before.values()]
    finished = finished_keys(db, fake.delivered(mark))
    fake.reset()
    resume_mark = fake.mark()
    t0 = time.monotonic()
    out = subprocess.run([*IZ, "sweep", "--resume", str(sweep["id"])], env=env, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert f"{len(before) - len(done_before)} of {len(before)} cells to run" in out.stderr
    assert "larger_animal" in out.stdout and "mean" in out.stdout  # the method x task table
    cells = _runs_whole(db, sweep["id"])
    h = open_history(db)
    for c in cells:  # the cells finished before the kill were left alone
        if c["id"] in done_before:
            run_id, cands = done_before[c["id"]]
            assert c["run_id"] == run_id
            assert [(x["id"], x["instruction"], x["dev_score"]) for x in h.candidates(run_id)] == cands
    assert h.sweep(sweep["id"])["status"] == "finished"
    h.close()
    asked_again = [r for r in fake.since(resume_mark) if r.key in finished]
    assert asked_again == [], f"{len(asked_again)} finished calls were paid again"
    assert time.monotonic() - t0 < 400
    assert os.path.exists(db)


def test_cells_that_fail_for_good_are_marked_and_the_sweep_goes_on(home: Path, fake: FakeOpenAI) -> None:
    """A task too small for the sweep's splits (written by hand: an import would refuse it) fails its cells before
    any run is recorded; the other cells finish; `iz sweep` exits non-zero, prints each failure once, and no
    traceback. (A task that does not exist at all is refused before the sweep is recorded:
    test_every_id_checked.py.)"""
    tiny = home / "tasks" / "tiny_task"
    tiny.mkdir(parents=True)
    (tiny / "task.toml").write_text('name = "tiny_task"\ndescription = "Two examples."\nmetric = "contains"\n')
    (tiny / "data.jsonl").write_text('{"input": "cat, whale", "output": "whale"}\n'
                                     '{"input": "ant, horse", "output": "horse"}\n')
    env = engine_env(home)
    out = subprocess.run([*IZ, "sweep", "--tasks", "larger_animal,tiny_task", "--methods", "manual",
                          "--instruction", INSTRUCTIONS[0], "--workers", "1", *CLI_SETTINGS], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr + out.stdout
    assert "tiny_task has 2 example" in out.stdout and "fewer demos" in out.stdout  # the split's message and fix
    h = open_history(home / "history.db")
    (sweep,) = h.sweeps()
    cells = {c["task"]: c for c in h.sweep_cells(sweep["id"])}
    assert sweep["status"] == "failed"
    assert cells["larger_animal"]["status"] == "finished"
    assert cells["tiny_task"]["status"] == "failed" and cells["tiny_task"]["run_id"] is None


def test_a_refused_key_fails_each_cell_once_and_resume_retries_them(home: Path, fake: FakeOpenAI) -> None:
    """A 401 is permanent: the cell's run fails with the endpoint's message, the sweep goes on to the next cell
    rather than retrying; once the key is fixed, --resume runs the failed cells again."""
    fake.permanent = "401"
    driver = SweepDriver(workers=1)
    sweep_id = driver.create(_spec([0]))
    result = driver.run(sweep_id)
    assert result["status"] == "failed"
    assert [c["status"] for c in result["cells"]] == ["failed"] * 4
    assert all("401" in (c["error"] or "") or "refused" in (c["error"] or "").lower() for c in result["cells"])
    failed_runs = {c["run_id"] for c in result["cells"]}
    fake.reset()
    fake.permanent = None
    again = SweepDriver(workers=1).run(sweep_id)
    assert again["status"] == "finished"
    assert {c["run_id"] for c in again["cells"]} == failed_runs  # the same runs, resumed, not new ones
    _runs_whole(home / "history.db", sweep_id)


def test_ctrl_c_stops_the_sweep_cleanly_and_resume_finishes_it(home: Path, fake: FakeOpenAI) -> None:
    """Ctrl-C (SIGINT to `iz sweep`): the workers stop, the runs in progress are left resumable, the message says
    how to resume, no traceback; `--resume` then finishes the sweep."""
    import signal

    db = home / "history.db"
    # Each answer takes 0.25 s: the whole sweep then takes several seconds, so it is still going on when the
    # signal lands (against an instant fake it could finish in the ~2 s between the check below and the signal).
    fake.delay_s = 0.25
    args = [*IZ, "sweep", "--tasks", ",".join(TASKS), "--methods", "ape,manual", "--seeds", "0-1", "--workers", "2",
            *CLI_SETTINGS]
    for text in INSTRUCTIONS:
        args += ["--instruction", text]
    # As from a terminal: SIGINT at its default. A shell without job control starts background commands with
    # SIGINT ignored, and Python then keeps ignoring it (the cause of this test's earlier failures when the
    # suite was started with `&`: the sweep never saw the signal and ran to its end).
    proc = subprocess.Popen(args, env=engine_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 200
    workers: list[int] = []
    while time.monotonic() < deadline:
        workers = children(proc.pid)
        if len(fake.log) >= 30 and len(workers) == 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before Ctrl-C"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "iz sweep --resume 1" in err
    assert wait_gone(workers) == []
    check_integrity(db)
    h = open_history(db)
    assert h.sweep(1)["status"] == "interrupted"
    cells = h.sweep_cells(1)
    assert all(c["status"] in ("finished", "pending") for c in cells)
    assert any(c["status"] == "pending" for c in cells)
    for c in cells:
        if c["run_id"] is not None and c["status"] == "pending":
            assert h.run(c["run_id"])["status"] in ("cancelled", "created")
    h.close()
    out = subprocess.run([*IZ, "sweep", "--resume", "1"], env=engine_env(home), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    _runs_whole(db, 1)
