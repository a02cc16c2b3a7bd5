"""An imported task is checked for what no run could use: an example far beyond any model's context, or too few
examples to split into demos, dev and test. Refused with one message naming the example or the counts (and nothing
written); a task folder written by hand is checked again when a run draws its splits. Real parts: the `iz` command in
a subprocess, on a fresh IZ_HOME (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import IZ

from engine import paths
from engine.tasks.limits import MAX_EXAMPLE_CHARS

pytestmark = pytest.mark.timeout(300)


def _iz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IZ, *args], capture_output=True, text=True, timeout=240, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows), encoding="utf-8")
    return path


def test_an_example_beyond_any_context_is_refused_by_name(tmp_path: Path) -> None:
    rows = [("cat", "CAT"), ("x" * 5_000_000, "X"), ("dog", "DOG"), ("owl", "OWL")]
    out = _iz("tasks", "import", str(_jsonl(tmp_path / "huge.jsonl", rows)))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text
    assert "example 2" in text and "5,000,000 characters" in text and f"{MAX_EXAMPLE_CHARS:,}" in text, text
    assert not (paths.user_tasks_dir() / "huge").exists()


def test_a_task_too_small_to_split_is_refused_with_the_counts(tmp_path: Path) -> None:
    out = _iz("tasks", "import", str(_jsonl(tmp_path / "tiny.jsonl", [("cat", "CAT"), ("dog", "DOG")])))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "has 2 examples" in text and "at least 3" in text, text
    assert not (paths.user_tasks_dir() / "tiny").exists()


def test_a_task_smaller_than_the_default_split_is_imported_with_a_note(tmp_path: Path) -> None:
    rows = [(w, w.upper()) for w in ("cat", "dog", "owl", "bee")]
    out = _iz("tasks", "import", str(_jsonl(tmp_path / "small.jsonl", rows)))
    assert out.returncode == 0, out.stderr
    assert "a run needs --demos 2 or fewer" in out.stdout + out.stderr


def test_a_hand_written_task_with_a_huge_example_fails_when_a_run_draws_it() -> None:
    folder = paths.user_tasks_dir() / "handmade"
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text('name = "handmade"\ndescription = "Written by hand."\nmetric = "contains"\n')
    rows = [(w, w.upper()) for w in ("cat", "dog", "owl", "bee", "ant", "elk", "yak")] + [("y" * 30_000, "Y")]
    _jsonl(folder / "data.jsonl", rows)
    out = _iz("run", "handmade", "--dry-run", "--demos", "2", "--dev", "3", "--test", "3")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text
    assert "30,000 characters" in text and "task handmade" in text, text
