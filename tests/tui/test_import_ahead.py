"""The history's modules are imported on a background thread once the first screen is up, so the first ``h``
does not wait for them (sqlite-utils brings numpy with it)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config
from iz_tui.app import IZApp
from tests.tui.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

#: A fresh process (this test process has imported everything long ago): which of the history's modules are
#: loaded on the home screen, right after it is up and a moment later.
PROBE = """
import asyncio, sys
from pathlib import Path
from engine.config import Config
from iz_tui.app import IZApp
WATCHED = ("sqlite_utils", "engine.store", "iz_tui.screens.history", "iz_tui.screens.run")
class A(IZApp):
    CSS_PATH = str(Path(sys.argv[2]) / "iz_tui" / "iz.tcss")
    IMPORT_AHEAD_S = 1.0  # room for a slow machine to reach the first check before the imports start
async def main():
    app = A(history_path=Path(sys.argv[1]), config=Config())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        print("start:", *[m for m in WATCHED if m in sys.modules])
        for _ in range(300):
            await pilot.pause(0.05)
            if all(m in sys.modules for m in WATCHED):
                break
        print("later:", *[m for m in WATCHED if m in sys.modules])
        print("screen:", type(app.screen).__name__)
asyncio.run(main())
"""


def test_the_history_modules_are_imported_after_the_first_screen(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "history.db"), str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {key: value.split() for key, value in (line.split(":", 1) for line in proc.stdout.splitlines())}
    assert "sqlite_utils" not in lines["start"]  # the first screen did not wait for them ...
    assert lines["later"] == ["sqlite_utils", "engine.store", "iz_tui.screens.history",
                              "iz_tui.screens.run"]  # ... then loaded
    assert lines["screen"] == ["HomeScreen"]  # nothing was opened for it


async def test_an_import_that_fails_ahead_is_left_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    monkeypatch.setattr(IZApp, "IMPORT_AHEAD", ("iz_tui.no_such_module", "engine.store"))
    monkeypatch.setattr(IZApp, "IMPORT_AHEAD_S", 0.01)
    started: list[str] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    app = IZApp(history_path=tmp_path / "history.db", config=Config())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "iz-import-ahead" in started, what="the import thread started")
        await pilot.pause(0.2)
        await pilot.press("h")  # the app goes on as usual
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HistoryScreen", what="history")
    assert not failures
