"""Children that run ``python -m <our module>`` (the engine process, a sweep's worker) import this installation's
code, never a folder named ``engine`` in the caller's working directory (``-m`` would put the cwd first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import paths


@pytest.fixture
def shadow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a decoy ``engine`` package that announces itself and stops."""
    pkg = tmp_path / "engine"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise SystemExit('SHADOW engine imported')\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_child_imports_this_installation_not_the_cwd(shadow: Path) -> None:
    code = subprocess.run(paths.module_command(sys.executable, "engine.paths"), env=paths.child_env({}),
                          capture_output=True, text=True, timeout=60)
    assert code.returncode == 0 and "SHADOW" not in code.stderr, code.stderr
    probe = ("import engine, sys; print(engine.__file__)")
    out = subprocess.run([sys.executable, "-P", "-c", probe], env=paths.child_env({}), capture_output=True,
                         text=True, timeout=60)
    assert Path(out.stdout.strip()).parent == Path(paths.__file__).resolve().parent, out


def test_without_the_guard_the_cwd_would_win(shadow: Path) -> None:
    """What the guard prevents (so the test above can fail): plain ``-m`` imports the decoy."""
    plain = subprocess.run([sys.executable, "-m", "engine.paths"], env=paths.child_env({}), capture_output=True,
                           text=True, timeout=60)
    assert "SHADOW engine imported" in plain.stderr


async def test_the_engine_process_starts_from_a_folder_with_its_own_engine(shadow: Path) -> None:
    from engine.wire.client import EngineClient

    client = EngineClient(env={"IZ_HOME": str(shadow / "home"), "PATH": "/usr/bin:/bin"})
    try:
        await client.start()
        status = await client.status()
        assert status["pid"] == client.pid
    finally:
        await client.close()
