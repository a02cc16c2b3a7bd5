"""A task that runs its own code (``metric = "python"``: the folder's metric.py) is said plainly: a run prints one
line naming the file and its SHA-256 and records them with the run; ``--no-code`` refuses such a task before
anything is recorded. Real parts: `iz run` in a subprocess, the real engine process, a loopback OpenAI-compatible
endpoint (tests/unit/unit_fakes.py), a SQLite history."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import IZ, Sandbox, fake_profile
from unit_fakes import FakeEndpoint

from engine.store import open_history

pytestmark = pytest.mark.timeout(300)

METRIC = "def score(output, answers):\n    return float(output.strip().lower() in [a.lower() for a in answers])\n"


def _task(sb: Sandbox) -> Path:
    folder = sb.home / "tasks" / "coded"
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text('name = "coded"\ndescription = "Scored by its own code."\n'
                                      'metric = "python"\npython = "metric.py:score"\n', encoding="utf-8")
    (folder / "metric.py").write_text(METRIC, encoding="utf-8")
    rows = [{"input": f"{a}, {b}", "output": b} for a, b in (("ant", "elephant"), ("cat", "horse"), ("bee", "whale"),
                                                              ("fly", "moose"), ("eel", "shark"), ("owl", "bear"))]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder / "metric.py"


def _run(sb: Sandbox, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IZ, "run", "coded", "--method", "manual", "--instruction", "Write the larger animal.",
                           "--demos", "1", "--dev", "2", "--test", "2", "--json", *extra], capture_output=True,
                          text=True, timeout=240, env=sb.environ(), stdin=subprocess.DEVNULL)


def test_a_run_of_a_task_with_code_says_so_and_records_the_file(sandbox: Sandbox, fake_endpoint: FakeEndpoint) -> None:
    sandbox.config.write_text(fake_profile(fake_endpoint.url), encoding="utf-8")
    metric = _task(sandbox)
    digest = hashlib.sha256(metric.read_bytes()).hexdigest()
    out = _run(sandbox)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "runs its own code" in line]
    assert len(lines) == 1 and "metric.py:score" in lines[0] and digest[:12] in lines[0], out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    made = open_history(sandbox.home / "history.db").run(run_id)["provenance"]
    assert made["task_code"]["sha256"] == digest and made["task_code"]["function"] == "score"


def test_no_code_refuses_the_task_before_anything_is_recorded(sandbox: Sandbox, fake_endpoint: FakeEndpoint) -> None:
    sandbox.config.write_text(fake_profile(fake_endpoint.url), encoding="utf-8")
    _task(sandbox)
    out = _run(sandbox, "--no-code")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text
    assert "runs its own code (metric.py:score)" in text and "--no-code" in text, text
    assert fake_endpoint.requests == []
    db = sandbox.home / "history.db"
    assert not db.exists() or open_history(db).runs() == []
