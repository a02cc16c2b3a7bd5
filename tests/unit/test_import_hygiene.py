"""The engine never loads Textual; the TUI and the `iz` command never load the ML stack.

Checked in a fresh interpreter, by reading sys.modules after the import, because a stray import anywhere in the
chain would make `iz` take seconds to open (torch + transformers + botorch cost about 2.6 s here).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "botorch", "gpytorch"]


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", [
    "engine", "engine.config", "engine.store", "engine.runner", "engine.server", "engine.bo", "engine.generators.transformers",
    "engine.blackbox", "engine.tasks",
])
def test_engine_never_imports_textual(module: str) -> None:
    try:
        loaded = _loaded_after(f"import {module}")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"import {module} failed: {exc.stderr[-2000:]}")
    assert "textual" not in loaded


@pytest.mark.parametrize("module", [
    "iz_tui", "iz_tui.__main__", "iz_tui.app", "iz_tui.cli", "iz_tui.commands.sweep", "engine.sweep.driver",
])
def test_tui_never_imports_the_ml_stack(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert not loaded & set(HEAVY), f"{module} pulled in {sorted(loaded & set(HEAVY))}"


def test_iz_help_lists_the_commands_without_the_ml_stack() -> None:
    code = ("import sys\nsys.argv=['iz','--help']\nfrom iz_tui.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY)
    out = subprocess.run([sys.executable, "-m", "iz_tui", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("config", "tasks", "run", "runs", "show"):
        assert cmd in out.stdout, cmd


def test_a_sweep_driver_loads_neither_the_ml_stack_nor_ray_until_asked() -> None:
    """The driver runs in the `iz` process (workers load the models); Ray is an optional extra, imported only for
    --ray."""
    loaded = _loaded_after("import engine.sweep.driver, engine.sweep.backends, iz_tui.commands.sweep")
    assert not loaded & {*HEAVY, "ray"}
