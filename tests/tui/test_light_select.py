"""LightSelect: two widgets for the closed picker, and otherwise Textual's Select (keys, mouse, values, messages)."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Input, Select

from iz_tui.widgets import light_select
from iz_tui.widgets.light_select import LightSelect, SelectOverlay
from tests.tui.helpers import wait_for

OPTIONS = [("dev score", "score"), ("relevance", "relevance"), ("a label far too long to fit the picker", "long")]


class Picker(App[None]):
    CSS = "LightSelect { width: 24; } Select { width: 24; }"

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Input(id="before")
        yield LightSelect(OPTIONS, prompt="any order", compact=True, id="light")
        yield Select(OPTIONS, prompt="any order", compact=True, id="plain")
        yield LightSelect(OPTIONS, prompt="any order", id="light-framed")
        yield Select(OPTIONS, prompt="any order", id="plain-framed")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "light":
            self.changes.append(event.value)


def shown(select: Select[Any]) -> str:
    """What the terminal shows of the closed picker: its line of the last frame (a widget that forgot to
    refresh would still show the old one)."""
    region = select.query_one(light_select.OneLineCurrent).content_region
    chops = select.app.screen._compositor.render_update(full=True).strips[region.y]  # type: ignore[union-attr]
    return "".join(strip.text for strip in chops)[region.x:region.right]


async def open_with_enter(pilot: Any, select: Select[Any]) -> None:
    select.focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: select.expanded, what=f"{select.id}: the list opened")


def test_this_textual_is_the_one_it_was_written_for() -> None:
    # If a Textual upgrade turns this False, the pickers fall back to plain Selects: still correct, but the
    # history's first page gets slower again (bench/history_scale.py) — look at light_select.py then.
    assert light_select.SUPPORTED


async def test_closed_it_is_three_widgets_where_select_is_six() -> None:
    app = Picker()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        light = app.query_one("#light", LightSelect)
        plain = app.query_one("#plain", Select)
        assert len(light.query("*")) == 1  # under it: the one-line current (the option list comes when it opens)
        assert len(plain.query("*")) == 5  # SelectCurrent, its three Statics, the overlay
        assert isinstance(light, Select)  # query_one(..., Select) finds it
        assert shown(light).startswith("any order") and shown(light).endswith("▼")
        # with its border (not compact) it takes the room a plain Select takes
        framed = app.query_one("#light-framed", LightSelect)
        assert framed.region.height == app.query_one("#plain-framed", Select).region.height == 3
        assert shown(framed).startswith("any order")


async def test_keys_open_it_and_choose_like_select() -> None:
    app = Picker()
    async with app.run_test(size=(60, 20)) as pilot:
        chosen = {}
        for sel_id in ("plain", "light"):
            select = app.query_one(f"#{sel_id}", Select)
            await open_with_enter(pilot, select)
            if sel_id == "light":
                assert shown(select).endswith("▲")
            await pilot.press("down", "down", "enter")
            await wait_for(pilot, lambda s=select: not s.expanded, what=f"{sel_id}: the list closed")
            chosen[sel_id] = select.value
        light = app.query_one("#light", LightSelect)
        assert chosen["light"] == chosen["plain"] == "relevance"  # the blank option first, then the options
        assert shown(light).startswith("relevance") and shown(light).endswith("▼")
        assert app.changes[-1] == "relevance"
        light.clear()
        await pilot.pause()
        assert light.value is Select.NULL and shown(light).startswith("any order")


async def test_a_click_opens_it_and_a_long_label_is_cut_to_fit() -> None:
    app = Picker()
    async with app.run_test(size=(60, 20)) as pilot:
        light = app.query_one("#light", LightSelect)
        light.value = "long"
        await pilot.pause()
        text = shown(light)
        assert len(text) == light.query_one(light_select.OneLineCurrent).content_size.width
        assert "…" in text and text.endswith("▼")
        await pilot.click("#light")
        await wait_for(pilot, lambda: light.expanded, what="the list opened by a click")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not light.expanded, what="escape closed it")
        assert light.value == "long"


async def test_new_options_keep_working() -> None:
    app = Picker()
    async with app.run_test(size=(60, 20)) as pilot:
        light = app.query_one("#light", LightSelect)
        light.set_options([("antonyms", "antonyms"), ("past_tense", "past_tense")])
        await pilot.pause()
        assert shown(light).startswith("any order")
        light.value = "past_tense"
        await pilot.pause()
        assert shown(light).startswith("past_tense")


async def test_its_list_comes_when_it_opens_with_the_choice_highlighted_as_select_does() -> None:
    app = Picker()
    async with app.run_test(size=(60, 20)) as pilot:
        highlighted = {}
        for sel_id in ("plain", "light"):
            select = app.query_one(f"#{sel_id}", Select)
            select.value = "long"  # chosen before the list was ever opened
            await pilot.pause()
            await open_with_enter(pilot, select)
            highlighted[sel_id] = select.query_one(SelectOverlay).highlighted
            await pilot.press("escape")
        assert highlighted["light"] == highlighted["plain"] == 3  # the blank option, then the three options
        light = app.query_one("#light", LightSelect)
        light.set_options([("antonyms", "antonyms")])  # new options reach the list now that it exists
        await pilot.pause()
        assert light.query_one(SelectOverlay).option_count == 2
