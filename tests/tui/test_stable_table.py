"""StableTable's fast cells: one-line Text cells drawn without Rich's layout, exactly as Textual draws them."""

from __future__ import annotations

from typing import Any

import pytest
from rich.padding import Padding
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


class AutoWidths(App[None]):
    """Columns as wide as their widest cell (the history's instruction column), rows plain, labelled or not."""

    CSS = "DataTable { height: 10; }"

    def __init__(self, label: str | None = None) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        yield StableTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(StableTable)
        for label in ("a", "b", "c", "text"):
            table.add_column(label)  # no width: measured from the cells
        for i, row in enumerate(ROWS):
            table.add_row(*row, label=self.label if i == 1 else None)
        table.add_row(Padding(Text("padded"), (0, 3)), "x", "y", "z")  # not a Text: measured as Textual does


async def widths(monkeypatch: pytest.MonkeyPatch, *, fast: bool, label: str | None = None) -> tuple[Any, ...]:
    """The columns' measured widths and the table as drawn, fast widths on or off."""
    monkeypatch.setattr(stable_table, "FAST_WIDTHS", fast)
    app = AutoWidths(label)
    async with app.run_test(size=(100, 12)) as pilot:
        await pilot.pause()
        table = app.query_one(StableTable)
        return [c.content_width for c in table.ordered_columns], drawn(table)


def test_this_textual_measures_as_it_was_written_for() -> None:
    # If an upgrade turns this False, new rows are measured through Rich: correct, only slower.
    assert stable_table.FAST_WIDTHS


async def test_fast_widths_are_textuals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stable_table, "_width_checks_left", 0)  # no safety net: the fast measure alone
    measured: list[int | None] = []
    real = StableTable._text_width

    def counted(cell: Any) -> int | None:
        measured.append(real(cell))
        return measured[-1]

    monkeypatch.setattr(StableTable, "_text_width", staticmethod(counted))
    textual = await widths(monkeypatch, fast=False)
    assert not measured
    assert await widths(monkeypatch, fast=True) == textual
    assert textual[0][3] == len(LONG) + 1  # the long text sets its column (和 is two cells wide)
    assert sum(w is not None for w in measured) == 4 * len(ROWS) + 3 and None in measured  # the Padding: Textual's


async def test_labelled_rows_are_measured_textuals_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stable_table, "_width_checks_left", 0)
    calls: list[Any] = []
    monkeypatch.setattr(StableTable, "_text_width", staticmethod(lambda cell: calls.append(cell)))  # never asked
    textual = await widths(monkeypatch, fast=False, label="a row label")
    assert await widths(monkeypatch, fast=True, label="a row label") == textual
    assert not calls


async def test_a_width_difference_switches_the_fast_measure_off(monkeypatch: pytest.MonkeyPatch) -> None:
    textual = await widths(monkeypatch, fast=False)
    real = StableTable._text_width
    monkeypatch.setattr(StableTable, "_text_width", staticmethod(lambda cell: None if (w := real(cell)) is None
                                                                  else w + 1))  # a Rich that measures differently
    monkeypatch.setattr(stable_table, "_width_checks_left", 0)
    assert await widths(monkeypatch, fast=True) != textual  # unchecked, the difference would show
    monkeypatch.setattr(stable_table, "_width_checks_left", 5)
    assert await widths(monkeypatch, fast=True) == textual  # checked: Textual's widths ...
    assert not stable_table.FAST_WIDTHS  # ... and the fast measure off for the process
