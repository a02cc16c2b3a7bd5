"""Sweeps: the list (with progress, live), one sweep's method x task table and cells, a cell opening its run.

The history is filled through the real store API (runs, then a sweep whose cells point at them), in the per-test
IZ_HOME; what is asserted is what a person reads on the screen.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from engine.store import History
from engine.sweep.spec import SweepSpec
from engine.usage import Usage
from iz_tui.app import IZApp
from iz_tui.screens.history import HistoryScreen
from iz_tui.screens.home import HomeScreen
from iz_tui.screens.sweeps import SweepScreen, SweepsScreen, seeds_text

from .conftest import ENDPOINT, default_config
from .helpers import screen_text, text_of, wait_for

#: (method, task) -> test score per seed; None = the cell failed.
SCORES: dict[tuple[str, str], list[float | None]] = {
    ("instructzero", "larger_animal"): [0.4, 0.6],  # 0.50 ±0.14
    ("random", "larger_animal"): [0.3, 0.3],  # 0.30 ±0.00
    ("instructzero", "first_letter"): [0.9, 0.7],  # 0.80 ±0.14
    ("random", "first_letter"): [0.9, None],  # 0.90 (1/2): best on first_letter
}
ERROR = "the endpoint http://127.0.0.1:9/v1 refused the connection"
BEST = {("instructzero", "larger_animal", 0): "Write the larger of the two animals.",
        ("random", "first_letter", 0): "Say the first letter."}


def _run(h: History, task: str, method: str, seed: int, test: float | None) -> dict[str, Any]:
    rid = h.create_run(task, method, {"method": method, "seed": seed, "n_dev": 3, "n_test": 3}, ENDPOINT)
    fields: dict[str, Any] = {"status": "finished" if test is not None else "failed", "test_score": test,
                              "best_dev_score": None if test is None else test + 0.05, "evaluations": 4, "calls": 12,
                              "calls_saved": 2, "seconds": 10.0}
    cid = None
    text = BEST.get((method, task, seed))
    if text is not None:
        cid = h.add_candidate(rid, 0, 0, [0.1, 0.2], text)
        h.record_score(cid, dev_score=test + 0.05, scores=[1.0, 0.0, 1.0], outputs=[], usage=Usage.reused(3))
        fields.update(best_candidate_id=cid, best_instruction=text)
    h.update_run(rid, **fields)
    return {"run_id": rid, "candidate_id": cid}


def fill_sweeps(h: History) -> dict[str, Any]:
    """Sweep A: 2 tasks x 2 methods x 2 seeds, finished, one cell failed. Sweep B (newer): 2 cells, not started."""
    spec = SweepSpec.build(tasks=["larger_animal", "first_letter"], methods=["instructzero", "random"], seeds=[0, 1],
                           endpoint="embedded", settings={"budget_evaluations": 4})
    grid = spec.cells()
    a = h.create_sweep(spec.model_dump(), grid, backend="local", workers=2)
    info: dict[str, Any] = {"a": a, "runs": {}}
    for cell in h.sweep_cells(a):
        key = (cell["method"], cell["task"])
        test = SCORES[key][cell["seed"]]
        run = _run(h, cell["task"], cell["method"], cell["seed"], test)
        info["runs"][(*key, cell["seed"])] = {**run, "cell_id": cell["id"], "position": cell["position"]}
        h.update_cell(cell["id"], run_id=run["run_id"], status="finished" if test is not None else "failed",
                      attempts=1 if test is not None else 2, error=None if test is not None else ERROR)
    h.update_sweep(a, status="finished", seconds=125.0, started_at="2025-01-01T00:00:00.000+00:00",
                   finished_at="2025-01-01T00:02:05.000+00:00")
    spec_b = SweepSpec.build(tasks=["first_letter"], methods=["ape"], seeds=[0, 1])
    info["b"] = h.create_sweep(spec_b.model_dump(), spec_b.cells(), backend="ray", workers=4)
    return info


def _keys(table: DataTable[Any]) -> list[str]:
    return [str(r.key.value) for r in table.ordered_rows]


def _cell(table: DataTable[Any], row: str, column: str) -> str:
    return str(table.get_cell(row, column))


async def _sweeps(pilot: Any, app: IZApp) -> SweepsScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), what="home")
    await pilot.press("w")
    return await wait_for(pilot, lambda: isinstance(app.screen, SweepsScreen) and app.screen, what="sweeps")


async def _open(pilot: Any, app: IZApp, screen: SweepsScreen, sweep_id: int) -> SweepScreen:
    screen.table.move_cursor(row=_keys(screen.table).index(str(sweep_id)))
    await pilot.pause()
    await pilot.press("enter")
    return await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.is_mounted
                          and app.screen, what="sweep screen")


async def test_lists_sweeps_newest_first_with_their_progress(history: History) -> None:
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _sweeps(pilot, app)
        table = screen.table
        assert _keys(table) == [str(info["b"]), str(info["a"])]
        a = str(info["a"])
        assert _cell(table, a, "status") == "finished"
        assert _cell(table, a, "backend") == "local ×2"
        assert _cell(table, a, "cells") == "7/8 (1 failed)"
        assert _cell(table, a, "grid") == "2 tasks × 2 methods × 2 seeds"
        assert _cell(table, a, "time") == "2m 05s"
        b = str(info["b"])
        assert (_cell(table, b, "status"), _cell(table, b, "cells")) == ("created", "0/2")
        assert _cell(table, b, "grid") == "1 task × 1 method × 2 seeds"
        text = screen_text(app)
        assert "7/8 (1 failed)" in text and "ray ×4" in text
        # the highlighted sweep (the newest) described below the list
        assert "tasks first_letter · methods ape · seeds 0-1" in text_of(app, "#sweeps-info")
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


async def test_empty_history_says_how_to_get_a_sweep(history: History) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _sweeps(pilot, app)
        assert screen.table.row_count == 0
        assert "no sweeps yet" in text_of(app, "#sweeps-info")


async def test_method_by_task_table_shows_mean_and_spread_over_seeds(history: History) -> None:
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, app, await _sweeps(pilot, app), info["a"])
        scores = screen.scores
        assert [str(c.label) for c in scores.ordered_columns] == ["method", "larger_animal", "first_letter", "mean"]
        assert _keys(scores) == ["instructzero", "random"]
        assert _cell(scores, "instructzero", "task:larger_animal") == "0.50 ±0.14"
        assert _cell(scores, "random", "task:larger_animal") == "0.30 ±0.00"
        assert _cell(scores, "instructzero", "task:first_letter") == "0.80 ±0.14"
        assert _cell(scores, "random", "task:first_letter") == "0.90 (1/2)"  # one seed failed
        assert _cell(scores, "instructzero", "mean") == "0.65"
        assert _cell(scores, "random", "mean") == "0.60"

        def style(row: str, column: str) -> str:
            value = scores.get_cell(row, column)
            assert isinstance(value, Text)
            return str(value.style)

        # each task's best method is highlighted, the others not
        assert "green" in style("instructzero", "task:larger_animal")
        assert "green" not in style("random", "task:larger_animal")
        assert "green" in style("random", "task:first_letter")
        assert "green" not in style("instructzero", "task:first_letter")
        assert "green" in style("instructzero", "mean") and "green" not in style("random", "mean")
        text = screen_text(app)
        assert "0.50 ±0.14" in text and "0.90 (1/2)" in text
        head = text_of(app, "#sweep-head")
        assert "7 finished · 1 failed (of 8)" in head and "local ×2 workers" in head and "2m 05s" in head


async def test_cells_list_every_run_and_a_failed_cell_says_why(history: History) -> None:
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 34), notifications=True) as pilot:
        screen = await _open(pilot, app, await _sweeps(pilot, app), info["a"])
        table = screen.table
        assert table.row_count == 8
        assert "model" not in [c.key.value for c in table.ordered_columns]  # every cell on the endpoint's model
        ok = info["runs"][("instructzero", "larger_animal", 0)]
        key = str(ok["cell_id"])
        assert (_cell(table, key, "task"), _cell(table, key, "method"), _cell(table, key, "seed")) == (
            "larger_animal", "instructzero", "0")
        assert (_cell(table, key, "status"), _cell(table, key, "test"), _cell(table, key, "dev")) == (
            "finished", "0.400", "0.450")
        assert _cell(table, key, "run") == str(ok["run_id"])
        assert "best: Write the larger of the two animals." in text_of(app, "#sweep-info")
        bad = info["runs"][("random", "first_letter", 1)]
        bad_key = str(bad["cell_id"])
        assert _cell(table, bad_key, "status") == "failed"
        assert _cell(table, bad_key, "test") == "-"
        assert _cell(table, bad_key, "error").startswith("the endpoint http://127.0.0.1:9/v1")
        await pilot.press("f")  # only the failed cells
        await wait_for(pilot, lambda: _keys(table) == [bad_key], what="failed only")
        info_text = text_of(app, "#sweep-info")
        assert f"error: {ERROR}" in info_text and "2 attempts" in info_text
        await wait_for(pilot, lambda: ERROR in screen_text(app), what="the error on screen")
        await pilot.press("f")
        await wait_for(pilot, lambda: table.row_count == 8, what="every cell again")


async def test_enter_on_a_cell_opens_its_run(history: History) -> None:
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _open(pilot, app, await _sweeps(pilot, app), info["a"])
        target = info["runs"][("random", "first_letter", 0)]
        screen.table.move_cursor(row=_keys(screen.table).index(str(target["cell_id"])))
        await pilot.pause()
        await pilot.press("enter")
        history_screen = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen,
                                        what="the cell's run")
        await wait_for(pilot, lambda: "Say the first letter." in screen_text(app), what="its candidate")
        # only that run's candidates: the other run's best is not listed
        assert "Write the larger of the two animals." not in screen_text(app)
        assert history_screen.table.current_id() == target["candidate_id"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back on the sweep")


async def test_a_cell_without_a_run_says_so(history: History) -> None:
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 34), notifications=True) as pilot:
        screen = await _open(pilot, app, await _sweeps(pilot, app), info["b"])
        assert _cell(screen.table, _keys(screen.table)[0], "run") == "—"
        assert _cell(screen.scores, "ape", "task:first_letter") == "—"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("has no run yet" in n.message for n in app._notifications),
                       what="notification")
        assert app.screen is screen


async def test_a_sweep_written_by_another_process_shows_up_and_progresses(history: History) -> None:
    """The driver writes through its own connection: the open screens follow without being reopened."""
    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _sweeps(pilot, app)
        assert screen.table.row_count == 2
        spec = SweepSpec.build(tasks=["larger_animal"], methods=["ape", "random"], seeds=[0, 1, 2])
        new = history.create_sweep(spec.model_dump(), spec.cells(), backend="local", workers=3)
        await wait_for(pilot, lambda: _keys(screen.table)[:1] == [str(new)], timeout=5, what="the new sweep")
        assert _cell(screen.table, str(new), "cells") == "0/6"
        # its cells finish one by one: the counts follow
        cells = history.sweep_cells(new)
        history.update_sweep(new, status="running", started_at="2025-01-01T00:00:00.000+00:00")
        run = _run(history, "larger_animal", "ape", 0, 0.5)
        history.update_cell(cells[0]["id"], run_id=run["run_id"], status="finished", attempts=1)
        await wait_for(pilot, lambda: _cell(screen.table, str(new), "cells") == "1/6", timeout=5, what="progress")
        assert _cell(screen.table, str(new), "status") == "running"

        # and the sweep's own screen follows its cells too
        sweep_screen = await _open(pilot, app, screen, info["b"])
        cell = history.sweep_cells(info["b"])[1]
        run = _run(history, "first_letter", "ape", 1, 0.8)
        history.update_cell(cell["id"], run_id=run["run_id"], status="finished", attempts=1)
        await wait_for(pilot, lambda: _cell(sweep_screen.table, str(cell["id"]), "test") == "0.800", timeout=5,
                       what="the cell's score")
        await wait_for(pilot, lambda: _cell(sweep_screen.scores, "ape", "task:first_letter") == "0.80 (1/2)",
                       timeout=5, what="the table's score")


def test_seed_ranges() -> None:
    assert seeds_text([0, 1, 2]) == "0-2"
    assert seeds_text([7, 0, 1, 2, 9, 10]) == "0-2,7,9-10"
    assert seeds_text([3]) == "3"


async def test_the_history_opens_the_sweeps_with_w(history: History) -> None:
    from iz_tui.screens.history import HistoryScreen

    info = fill_sweeps(history)
    app = IZApp(config=default_config())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), what="home")
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history")
        await pilot.press("w")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, SweepsScreen) and app.screen, what="sweeps")
        assert str(info["a"]) in _keys(screen.table)
