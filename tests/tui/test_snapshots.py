"""Snapshots of the main screens at 80x24 with a fixed history (no clocks, no paths, no timestamps shown).

Update after an intended change with ``pytest tests/tui --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from typing import Any

from iz_tui.app import IZApp
from iz_tui.screens.compare import CompareScreen
from iz_tui.screens.run import RunScreen

from .conftest import default_config
from .helpers import wait_for


def test_home(snap_compare: Any) -> None:
    assert snap_compare(IZApp(config=default_config()), terminal_size=(80, 24))


def test_history(snap_compare: Any, filled: dict[str, Any]) -> None:
    assert snap_compare(IZApp(config=default_config()), press=["h", "down", "space"], terminal_size=(80, 24))


def test_detail(snap_compare: Any, filled: dict[str, Any]) -> None:
    assert snap_compare(IZApp(config=default_config()), press=["h", "enter"], terminal_size=(80, 24))


def test_compare(snap_compare: Any, filled: dict[str, Any]) -> None:
    async def open_compare(pilot: Any) -> None:
        await pilot.app.push_screen(CompareScreen(filled["runs"][0], filled["runs"][1]))
        await pilot.pause()

    assert snap_compare(IZApp(config=default_config()), run_before=open_compare, terminal_size=(80, 24))


def test_help(snap_compare: Any) -> None:
    assert snap_compare(IZApp(config=default_config()), press=["question_mark"], terminal_size=(80, 24))


def test_finished_run(snap_compare: Any, fake_engine: Any) -> None:
    async def run(pilot: Any) -> None:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.state == "finished",
                       what="finished")
        await pilot.pause()

    app = IZApp(config=default_config(), engine_factory=fake_engine("finish"))
    assert snap_compare(app, run_before=run, terminal_size=(80, 24))
