"""Several writers on one history: engines in two processes, the TUI writing marks, a reader on a screen.

SQLite in WAL mode lets readers go on while one connection writes; writers take turns. A write must wait its turn
(busy timeout) rather than fail with "database is locked", lose nothing, and a history screen open meanwhile must
show what the others wrote without being told.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from reliability_helpers import Sandbox, fake_profile
from unit_fakes import FakeEndpoint

from engine import paths
from engine.config import Config
from engine.store import open_history
from engine.usage import Usage


def _hold_write_lock(db: Path, seconds: float, started: threading.Event) -> threading.Thread:
    """Another connection (another process, as far as SQLite knows) that writes and keeps the lock a while."""

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("insert into runs (task, method, status) values ('other', 'manual', 'created')")
        started.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    t = threading.Thread(target=hold)
    t.start()
    return t


def test_a_write_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    """A transaction that reads before it writes (a mark, a score) used to fail at once with "database is
    locked" when another connection held the write lock: SQLite does not wait to upgrade a read to a write."""
    h = open_history(tmp_path / "history.db")
    try:
        rid = h.create_run("larger_animal", "manual", {}, {})
        cids = [h.add_candidate(rid, 0, i, None, f"instruction {i}") for i in range(2)]
        for write in (
            lambda: h.set_mark(cids[0], star=True, note="kept"),
            lambda: h.record_score(cids[1], dev_score=0.5, scores=[0.5], usage=Usage(1, 0, 3, 1),
                                   outputs=[{"input": "a", "answers": ["b"], "output": "b", "score": 0.5}],
                                   run_totals={"evaluations": 1}),
        ):
            started = threading.Event()
            holder = _hold_write_lock(h.path, 0.8, started)
            assert started.wait(10)
            t0 = time.monotonic()
            write()  # waits for the other writer, then succeeds
            waited = time.monotonic() - t0
            holder.join()
            assert waited > 0.3, "the write did not wait for the lock (or the lock was not held)"
        assert h.candidate(cids[0])["star"] == 1 and h.candidate(cids[1])["dev_score"] == 0.5
        assert h.run(rid)["evaluations"] == 1
        assert [r["task"] for r in h.runs()].count("other") == 2  # the other writer lost nothing either
    finally:
        h.close()


def test_two_engines_and_a_mark_writer_on_one_history(sandbox: Sandbox, fake_endpoint: FakeEndpoint) -> None:
    """Two `iz run` processes (an engine each) start at once on a new data folder and score manual runs into
    the same history while a third connection stars candidates as they appear (what the TUI writes): every
    candidate of both runs is there, scored, with its outputs, and nobody saw "database is locked"."""
    sandbox.write_config(fake_profile(fake_endpoint.url))
    fake_endpoint.delay = 0.01
    n = 10
    procs = []
    for who in ("a", "b"):
        args = ["run", "larger_animal", "--dev", "5", "--test", "3", "--json"]
        for i in range(n):
            args += ["--instruction", f"Engine {who}: write the larger animal, way {i}."]
        procs.append(sandbox.popen(*args))

    db = sandbox.home / "history.db"
    starred: set[int] = set()
    mark_errors: list[BaseException] = []
    done = threading.Event()

    def star_as_they_come() -> None:
        while not db.exists() and not done.is_set():
            time.sleep(0.05)
        h = open_history(db)
        try:
            while not done.is_set():
                for c in h.search(limit=1000):
                    if c["id"] not in starred:
                        h.set_mark(c["id"], star=True)
                        starred.add(c["id"])
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            mark_errors.append(exc)
        finally:
            h.close()

    marker = threading.Thread(target=star_as_they_come)
    marker.start()
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        done.set()
        marker.join()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in (out + err).lower(), err
    assert not mark_errors, mark_errors
    log = (sandbox.home / "logs" / "engine.log").read_text()
    assert "locked" not in log.lower() and "Traceback" not in log

    summaries = [json.loads(out) for out, _ in results]
    h = open_history(db)
    try:
        assert sorted(r["id"] for r in h.runs()) == sorted(s["run_id"] for s in summaries)
        for s in summaries:
            run = h.run(s["run_id"])
            assert run["status"] == "finished" and run["evaluations"] == n
            cands = h.candidates(s["run_id"])
            assert len(cands) == n and all(c["status"] == "scored" for c in cands)
            assert all(len(h.outputs(c["id"], "dev")) == 5 for c in cands)
            assert run["best_candidate_id"] is not None and run["test_score"] is not None
        assert starred, "the mark writer wrote nothing"
        assert {c["id"] for c in h.search(starred=True, limit=1000)} == starred
    finally:
        h.close()


async def test_the_history_screen_shows_a_run_going_on_in_another_process(sandbox: Sandbox,
                                                                         fake_endpoint: FakeEndpoint) -> None:
    """The TUI's history screen is open; an engine in another process (here `iz run`) scores candidates into the
    same file. The screen shows them as they land, before the run has finished."""
    from iz_tui.app import IZApp
    from iz_tui.screens.history import HistoryScreen

    sandbox.home = paths.home()  # the data folder the app reads (set per test by tests/conftest.py)
    sandbox.write_config(fake_profile(fake_endpoint.url))
    fake_endpoint.delay = 0.4  # about 0.4 s a candidate: the run lasts a few seconds once the engine is up
    n = 8
    args = ["run", "larger_animal", "--dev", "2", "--test", "0"]
    for i in range(n):
        args += ["--instruction", f"Tell me the larger animal, take {i}."]
    open_history(paths.history_db()).close()  # the file exists before the screen opens

    app = IZApp(config=Config())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        while not isinstance(app.screen, HistoryScreen):
            await pilot.pause(0.05)
        screen = app.screen
        assert len(screen.table.candidates) == 0
        proc = sandbox.popen(*args)
        try:
            counts: list[tuple[int, bool]] = []  # (rows shown, the run still going)
            deadline = time.monotonic() + 120
            ended: float | None = None
            while time.monotonic() < deadline:
                running = proc.poll() is None
                shown = len(screen.table.candidates)
                if not counts or counts[-1][0] != shown:
                    counts.append((shown, running))
                if shown == n:
                    break
                if not running:
                    ended = ended or time.monotonic()
                    if time.monotonic() - ended > 5 * HistoryScreen.POLL_S:
                        break  # the run is over and the screen still lags: it will not catch up
                await pilot.pause(0.1)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert counts[-1][0] == n, f"the screen never showed all {n} candidates: {counts}"
        assert any(0 < shown < n and running for shown, running in counts), (
            f"the screen showed nothing while the run was going on: {counts}")
        assert "locked" not in (out + err).lower()



async def test_a_mark_on_a_history_locked_too_long_is_a_message_not_a_crash(monkeypatch) -> None:
    """Another program holds the write lock longer than the busy timeout: starring says why it was not saved, the
    TUI goes on, and the same key works once the lock is gone."""
    from iz_tui.app import IZApp
    from iz_tui.screens.history import HistoryScreen

    monkeypatch.setenv("IZ_BUSY_TIMEOUT", "0.5")
    h = open_history(paths.history_db())
    rid = h.create_run("larger_animal", "manual", {}, {})
    cid = h.add_candidate(rid, 0, 0, None, "Write the larger animal.")
    h.record_score(cid, dev_score=1.0, scores=[1.0], usage=Usage(1, 0, 3, 1),
                   outputs=[{"input": "cat, dog", "answers": ["dog"], "output": "dog", "score": 1.0}])
    h.close()

    app = IZApp(config=Config())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        while not (isinstance(app.screen, HistoryScreen) and app.screen.table.candidates):
            await pilot.pause(0.05)
        holder = sqlite3.connect(paths.history_db(), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            await pilot.press("s")
            for _ in range(100):
                messages = [n.message for n in app._notifications]
                if any("locked by another program" in m for m in messages):
                    break
                await pilot.pause(0.1)
            assert any("locked by another program" in m for m in messages), messages
            assert app.is_running and isinstance(app.screen, HistoryScreen)
            assert not app.history.candidate(cid)["star"]
        finally:
            holder.close()
        await pilot.press("s")
        for _ in range(100):
            if app.history.candidate(cid)["star"]:
                break
            await pilot.pause(0.1)
        assert app.history.candidate(cid)["star"] == 1
