"""The app takes its start-up objects out of the garbage collector's walks once its first screen is up."""

from __future__ import annotations

import gc
from pathlib import Path

from engine.config import Config
from iz_tui.app import IZApp
from tests.tui.helpers import wait_for


async def test_the_start_up_objects_are_frozen_once_the_app_is_ready(tmp_path: Path) -> None:
    gc.unfreeze()  # another app of this test process may have frozen its own
    assert gc.get_freeze_count() == 0
    app = IZApp(history_path=tmp_path / "history.db", config=Config())
    async with app.run_test(size=(100, 30)) as pilot:
        frozen = await wait_for(pilot, gc.get_freeze_count, what="the start-up objects frozen")
        assert frozen > 10_000  # the modules, classes and the home screen, not a handful
