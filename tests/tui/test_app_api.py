"""The app implements what screens may ask of it (iz_tui/app_api.py), and screens ask for nothing else.

The Protocol lets the screens be typed without importing the app (which imports every screen); these checks keep it
true as screens change."""

from __future__ import annotations

import re
from pathlib import Path

from iz_tui.app import IZApp
from iz_tui.app_api import MEMBERS, AppAPI

ROOT = Path(__file__).resolve().parents[2] / "iz_tui"


def test_the_protocol_lists_its_members() -> None:
    declared = {n for n in vars(AppAPI) if not n.startswith("_")} | set(AppAPI.__annotations__)
    assert declared == set(MEMBERS)


def test_the_app_has_every_member(tmp_path: Path) -> None:
    app = IZApp(history_path=tmp_path / "history.db")  # built, not run: Textual sets console and the rest here
    assert [m for m in MEMBERS if not (hasattr(IZApp, m) or hasattr(app, m))] == []


def test_screens_and_widgets_use_only_the_protocols_members() -> None:
    used = {m for folder in ("screens", "widgets") for p in (ROOT / folder).glob("*.py")
            for m in re.findall(r"self\.app\.([A-Za-z_]+)", p.read_text(encoding="utf-8"))}
    assert used - set(MEMBERS) == set(), "add the member to iz_tui/app_api.py (AppAPI and MEMBERS)"
