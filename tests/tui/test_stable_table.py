"""StableTable's fast cells: one-line Text cells drawn without Rich's layout, exactly as Textual draws them."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.strip import Strip
from textual.widgets import DataTable

from iz_tui.widgets import stable_table
from iz_tui.widgets.stable_table import StableTable

LONG = "an instruction far longer than its column, 和 wide characters, and [brackets] that are not markup"
ROWS: list[list[Any]] = [
    [Text("✓", style="bold cyan"), Text(""), Text("12", style="dim"), Text(LONG)],
    [Text(), Text("★", style="bold yellow"), Text("7"), Text.assemble(("= #3 ", "italic"), Text("dup", style="dim"))],
    [Text("x", style="underline"), Text("é"), Text("1.000", style="dim italic"), Text("short")],
    ["plain [b]markup[/b] string", 3.14159, None, Text("two\nlines")],  # the last one: Textual's path
]


class Table(App[None]):
    CSS = "DataTable { height: 8; }"

    def compose(self) -> ComposeResult:
        yield StableTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(StableTable)
        for label, width in (("a", 1), ("b", 3), ("c", 6), ("text", 24)):
            table.add_column(label, width=width)
        for row in ROWS:
            table.add_row(*row)


def drawn(table: DataTable[Any]) -> list[str]:
    """The table's lines as the terminal gets them, styles included (ANSI), from a fresh full frame."""
    region = table.region
    strips = table.app.screen._compositor.render_update(full=True).strips  # type: ignore[union-attr]
    console = table.app.console
    out = []
    for y in range(region.y, region.bottom):
        line = Strip.join(strips[y]).crop(region.x, region.right)
        with console.capture() as capture:
            console.print(Text.assemble(*((s.text, s.style) for s in line)), end="")
        out.append(capture.get())
    return out


async def frames(monkeypatch: pytest.MonkeyPatch, *, fast: bool) -> list[list[str]]:
    """The table drawn with the cursor on each row in turn, fast cells on or off."""
    monkeypatch.setattr(stable_table, "FAST_CELLS", fast)
    app = Table()
    seen = []
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        for _ in ROWS:
            seen.append(drawn(app.query_one(StableTable)))
            await pilot.press("down")
            await pilot.pause()
    return seen


def test_this_textual_is_the_one_it_was_written_for() -> None:
    # If an upgrade turns this False, tables draw every cell through Rich's layout: correct, only slower.
    assert stable_table.FAST_CELLS


async def test_fast_cells_look_like_textuals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stable_table, "_checks_left", 0)  # no safety net: the fast cells alone
    fast: list[Any] = []
    real = StableTable._draw_text_cell

    def counted(self: StableTable, *args: Any) -> Any:
        lines = real(self, *args)
        fast.append(lines)
        return lines

    monkeypatch.setattr(StableTable, "_draw_text_cell", counted)
    textual = await frames(monkeypatch, fast=False)
    assert not fast
    ours = await frames(monkeypatch, fast=True)
    assert ours == textual
    # One-line cells took the fast path (strings and numbers too: Textual makes them Text first) ...
    assert sum(lines is not None for lines in fast) >= 15
    assert any(lines is None for lines in fast)  # ... the two-line one did not


async def test_a_difference_switches_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    real = StableTable._draw_text_cell

    def shifted(self: StableTable, *args: Any) -> Any:
        lines = real(self, *args)
        if lines is not None:  # what a Rich that pads differently would give: off by one space
            lines[0][0] = lines[0][0]._replace(text=lines[0][0].text + " ")
        return lines

    textual = await frames(monkeypatch, fast=False)
    monkeypatch.setattr(StableTable, "_draw_text_cell", shifted)
    monkeypatch.setattr(stable_table, "_checks_left", 0)
    assert await frames(monkeypatch, fast=True) != textual  # unchecked, the difference would show
    monkeypatch.setattr(stable_table, "_checks_left", 10)
    monkeypatch.setattr(stable_table, "FAST_CELLS", True)
    app = Table()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        assert not stable_table.FAST_CELLS  # checked: the first difference turned it off ...
        assert drawn(app.query_one(StableTable)) == textual[0]  # ... and Textual's cells were drawn


class Growing(App[None]):
    CSS = "#fill { height: 1fr; } #auto { height: auto; max-height: 6; }"

    def compose(self) -> ComposeResult:
        yield StableTable(id="fill")
        yield StableTable(id="auto")

    def on_mount(self) -> None:
        for table in self.query(StableTable):
            table.add_column("n", key="n")


async def _rows(pilot: Any, table: StableTable, n: int) -> None:
    start = table.row_count
    for i in range(start, start + n):
        table.add_row(Text(f"row {i}"))
    await pilot.pause()
    await pilot.pause()


async def test_new_rows_lay_out_the_screen_only_when_a_scrollbar_or_the_size_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual.screen import Screen

    layouts: list[int] = []
    real = Screen._refresh_layout

    def counted(self: Screen[Any], *args: Any, **kwargs: Any) -> Any:
        layouts.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    app = Growing()
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        fill, auto = app.query_one("#fill", StableTable), app.query_one("#auto", StableTable)
        await _rows(pilot, fill, 3)
        assert not fill.show_vertical_scrollbar
        await _rows(pilot, fill, 40)  # more rows than fit: the scrollbar appears, which needs a layout
        assert fill.show_vertical_scrollbar
        layouts.clear()
        await _rows(pilot, fill, 40)  # the scrollbar was there already: no layout of the screen
        assert not layouts
        fill.scroll_end(animate=False)
        await pilot.pause()
        assert fill.max_scroll_y == fill.virtual_size.height - fill.scrollable_content_region.height
        assert "row 82" in "".join(line.text for line in fill.render_lines(fill.scrollable_content_region))
        fill.clear()
        await _rows(pilot, fill, 2)  # back to a few rows: the scrollbar goes
        assert not fill.show_vertical_scrollbar and fill.max_scroll_y == 0
        # A table whose height follows its rows (Textual's default) still grows with them.
        await _rows(pilot, auto, 1)
        before = auto.size.height
        await _rows(pilot, auto, 3)
        assert auto.size.height > before
