"""The TUI and the engine losing each other: neither takes the other down, and nothing is left behind.

- Under Textual's Pilot, with the real engine process: the engine is SIGKILLed in the middle of a run. The run
  screen says what happened and how to go on, no traceback reaches the screen or the terminal, and ``u`` resumes
  the run in a new engine to its end without paying a finished call twice.
- ``iz`` (the real command, in a pseudo-terminal whose session a shell leads, as in a real terminal) is SIGKILLed
  while a run streams on the real embedded llama.cpp server: nobody gets a SIGHUP, yet its engine notices (its
  stdin closes, its events have no reader), cancels the run between two candidates (resumable, no bogus error)
  and exits, stopping the server; no process is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_fakes import (
    FakeOpenAI,
    alive,
    check_integrity,
    children,
    cmdline,
    engine_env,
    finished_keys,
    sigkill,
    wait_gone,
    write_config,
)
from textual.widgets import Input, Select, TextArea

from engine.config import load_config
from engine.runner import Engine
from engine.store import open_history
from engine.usage import Usage
from iz_tui.app import IZApp
from iz_tui.screens.run import RunScreen

pytestmark = pytest.mark.timeout(180)

TASK = "larger_animal"
INSTRUCTIONS = ["Name the larger animal.", "Write the bigger of the two.", "Name the larger animal.",
                "Answer with one animal only."]


def _screen_text(app: IZApp) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


async def _wait(pilot, cond: Callable[[], object], timeout: float, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except Exception:  # not mounted yet
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        await pilot.pause(0.05)


async def test_engine_killed_mid_run_the_screen_says_so_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        fake_openai: Callable[..., FakeOpenAI]) -> None:
    fake = fake_openai()
    home = tmp_path / "home"
    write_config(home, fake.url)
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    db = home / "history.db"
    app = IZApp(config=load_config())
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        form = app.screen
        form.query_one("#method", Select).value = "manual"
        await pilot.pause()
        form.query_one("#manual", TextArea).load_text("\n".join(INSTRUCTIONS))
        form.query_one("#num-n_dev", Input).value = "3"
        form.query_one("#num-n_test", Input).value = "2"
        await pilot.pause()

        def engine_pid() -> int:
            assert app._client is not None and app._client.pid is not None
            return app._client.pid

        # Killed when the second candidate's second call arrives: the first candidate is scored and shown.
        fake.kill_at_request(5, engine_pid, db)
        await pilot.press("ctrl+r")
        run = await _wait(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen, 30, "the run screen")
        assert isinstance(run, RunScreen)
        await _wait(pilot, lambda: run.state == "failed", 120, "the run to fail with its engine")
        assert fake.kills and not alive(fake.kills[0])
        result = str(run.query_one("#run-result-text").render())
        assert "The run failed" in result and "killed by signal 9" in result, result
        assert "resume it later with u" in result and f"--resume {run.run_id}" in result
        shown = _screen_text(app)
        assert "Traceback" not in shown and 'File "' not in shown
        assert run.check_action("resume", ()) is True  # `u` is offered
        h = open_history(db)
        assert h.run(run.run_id)["status"] == "running"
        assert len(h.candidates(run.run_id, status="scored")) == 1
        h.close()
        check_integrity(db)
        finished = finished_keys(db, fake.log)
        assert len(finished) == 4
        mark = fake.mark()
        fake.reset()

        await pilot.press("u")
        await _wait(pilot, lambda: run.state in ("finished", "failed"), 120, "the resumed run to end")
        assert run.state == "finished", str(run.query_one("#run-result-text").render())
        assert app._client is not None and app._client.pid != fake.kills[0]  # a new engine
        assert not [r for r in fake.since(mark) if r.key in finished], "a finished call was asked again"
        h = open_history(db)
        cands = h.candidates(run.run_id)
        assert h.run(run.run_id)["status"] == "finished"
        h.close()
        assert [c["instruction"] for c in cands] == INSTRUCTIONS
        assert all(c["status"] == "scored" for c in cands)
        # One point per scored candidate on the plot: the resumed run's events arrive once each.
        assert len(run._xs) == len(cands)
        # The state flips before the result box is laid out and painted (seen on a loaded machine): wait for it.
        def painted() -> str | None:
            text = _screen_text(app)
            return text if "Finished" in text else None

        shown = str(await _wait(pilot, painted, 30, "the finished run's result to be painted"))
        assert "Traceback" not in shown
        await pilot.press("escape")
        await pilot.press("q")
    check_integrity(db)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out


# -- `iz` itself, SIGKILLed in a terminal ---------------------------------------------------------------------
def _interrupted_run(home: Path) -> int:
    """A manual run on the embedded endpoint with its first candidate scored, as an interrupted run looks in the
    history (the TUI's history offers to resume it)."""
    engine = Engine(load_config(), open_history(home / "history.db"))
    try:
        run_id = engine.create_run(TASK, {"method": "manual", "n_dev": 2, "n_test": 2, "n_demos": 2},
                                   endpoint="embedded", instructions=[f"{t} (pty)" for t in INSTRUCTIONS])
        h = engine.history
        cid = h.add_candidate(run_id, 0, 0, None, f"{INSTRUCTIONS[0]} (pty)")
        outputs = [{"example_index": i, "input": f"a, b{i}", "answers": ["a"], "output": "a", "score": 1.0,
                    "cache_hit": False, "prompt_tokens": 10, "completion_tokens": 1, "latency_s": 0.1}
                   for i in range(2)]
        h.record_score(cid, dev_score=1.0, scores=[1.0, 1.0], outputs=outputs, usage=Usage.of_answers(outputs),
                       run_totals={"evaluations": 1, "calls": 2})
        h.update_run(run_id, status="running")
    finally:
        engine.history.close()
    return run_id


@pytest.mark.integration
def test_iz_killed_leaves_no_engine_or_llama_server_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fake_openai: Callable[..., FakeOpenAI]) -> None:
    fake = fake_openai()
    home = tmp_path / "home"
    write_config(home, fake.url)
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    run_id = _interrupted_run(home)
    db = home / "history.db"

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 32, 110, 0, 0))
    env = {**engine_env(home), "TERM": "xterm-256color", "COLUMNS": "110", "LINES": "32"}

    def controlling_tty() -> None:  # runs in the child, after setsid: the pty becomes its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # A shell leads the terminal's session and outlives `iz`, as in a real terminal: the kernel then sends no
    # SIGHUP, and the engine must notice by itself (its stdin closes) that its TUI is gone.
    shell = subprocess.Popen(["/bin/sh", "-c", f"'{sys.executable}' -m iz_tui; sleep 120"], stdin=slave,
                             stdout=slave, stderr=slave, env=env, start_new_session=True,
                             preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    screen = bytearray()
    stop = threading.Event()

    def drain() -> None:  # a terminal must be read, or the TUI blocks writing to it
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                screen.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    engine: list[int] = []
    servers: list[int] = []
    tui: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while b"InstructZero" not in screen:  # the first frame is drawn
            assert shell.poll() is None and time.monotonic() < deadline, bytes(screen[-2000:])
            time.sleep(0.1)
        tui = [p for p in children(shell.pid) if "iz_tui" in cmdline(p)]
        assert len(tui) == 1
        time.sleep(0.5)
        for _ in range(3):  # history, then resume the highlighted candidate's run
            os.write(master, b"h")
            time.sleep(1.0)
            os.write(master, b"u")
            until = time.monotonic() + 10
            while not engine and time.monotonic() < until:
                engine = [p for p in children(tui[0]) if "engine serve" in cmdline(p)]
                time.sleep(0.1)
            if engine:
                break
        assert engine, "the TUI never started its engine"
        deadline = time.monotonic() + 120
        while True:  # the resumed run streams: the llama.cpp server is up and a new candidate is scored
            servers = servers or [p for p in children(engine[0]) if "llama_cpp.server" in cmdline(p)]
            h = open_history(db)
            scored = len(h.candidates(run_id, status="scored"))
            run = h.run(run_id)
            h.close()
            if servers and scored >= 2:
                break
            assert run["status"] != "failed", run["error"]
            assert alive(tui[0]) and time.monotonic() < deadline, "the run did not stream"
            time.sleep(0.1)

        os.kill(tui[0], signal.SIGKILL)
        left = wait_gone(tui + engine + servers, timeout=30)
        assert left == [], f"left behind: {[(p, cmdline(p)) for p in left]}"
        assert shell.poll() is None  # the terminal's session is still there: nobody got a SIGHUP
    finally:
        stop.set()
        for pid in tui + engine + servers:  # never leave one behind, even when the test fails
            if alive(pid):
                sigkill(pid)
        if shell.poll() is None:
            shell.kill()
            shell.wait(10)
        with contextlib.suppress(OSError):
            os.close(master)
        reader.join(5)
    check_integrity(db)
    h = open_history(db)
    run = h.run(run_id)
    # The engine saw its TUI go and cancelled the run between two candidates: resumable, no bogus error.
    assert run["status"] == "cancelled" and run["error"] is None, run["error"]
    h.close()
