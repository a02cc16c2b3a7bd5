"""`iz run` as a user types it: a real subprocess, the real engine, the embedded server, a real history file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from engine.store import open_history

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

IZ = [sys.executable, "-m", "iz_tui"]
REQUIRED = {"run_id", "task", "method", "best_instruction", "dev_score", "test_score", "evaluations", "calls",
            "calls_saved", "tokens", "seconds"}


def _iz(*args: str, timeout: int = 500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IZ, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def test_iz_run_json_prints_one_object_and_records_the_run() -> None:
    out = _iz("run", "sum", "--budget", "3", "--init", "2", "--batch", "1", "--dev", "3", "--test", "3",
              "--demos", "3", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)  # stdout is exactly one JSON object
    assert set(summary) >= REQUIRED
    assert summary["task"] == "sum" and summary["method"] == "instructzero" and summary["evaluations"] == 3
    run = open_history().run(summary["run_id"])
    assert run["best_instruction"] == summary["best_instruction"]
    assert run["test_score"] == summary["test_score"]
    # Resuming a finished run is refused with a clear message, not redone.
    again = _iz("run", "--resume", str(summary["run_id"]))
    assert again.returncode != 0
    assert "already finished" in again.stderr and "Traceback" not in again.stderr
    listing = _iz("runs")
    assert listing.returncode == 0 and "sum" in listing.stdout
    shown = _iz("show", str(summary["run_id"]))
    assert summary["best_instruction"][:30] in shown.stdout


def test_unknown_task_is_one_clear_error() -> None:
    out = _iz("run", "no_such_task", "--json", timeout=120)
    assert out.returncode != 0
    assert "no_such_task" in out.stderr and "iz tasks list" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_unreachable_endpoint_fails_clearly_and_keeps_the_record() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env_url = f"http://127.0.0.1:{port}/v1"
    out = _iz("run", "sum", "--endpoint", env_url, "--budget", "2", "--init", "2", "--dev", "2", "--test", "2",
              "--demos", "2", "--json")
    assert out.returncode != 0
    assert env_url in out.stderr and "running" in out.stderr
    assert "Traceback" not in out.stderr
    runs = open_history().runs()
    assert runs and runs[0]["status"] == "failed" and env_url in runs[0]["error"]
