"""The live run screen, driven by a scripted engine: progress, plot, candidates, best, cancel and errors."""

from __future__ import annotations

from textual.widgets import DataTable, ProgressBar

from engine.wire.events import CandidateProposed, CandidateScored, RunFinished
from iz_tui.app import IZApp
from iz_tui.formatting import fmt_score, paid_calls
from iz_tui.screens.history import HistoryScreen
from iz_tui.screens.home import HomeScreen
from iz_tui.screens.run import BEST, RunScreen
from iz_tui.widgets.plot import BestPlot

from .conftest import default_config
from .helpers import screen_text, text_of, wait_for


async def _start(pilot, app) -> RunScreen:
    await pilot.pause()
    await pilot.press("ctrl+r")
    screen = await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen, what="run screen")
    return screen


async def test_a_run_shows_progress_candidates_and_the_result(fake_engine) -> None:
    app = IZApp(config=default_config(), engine_factory=fake_engine("finish"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.state == "finished", what="the run to finish")
        bar = screen.query_one("#run-bar", ProgressBar)
        assert bar.total == 10 and bar.progress == 10
        assert "10/10 evals" in text_of(app, "#run-counts") and "3 saved by cache" in text_of(app, "#run-counts")
        table = screen.query_one("#run-cands", DataTable)
        assert table.row_count == 10
        best_rows = [k.value for k in table.rows if str(table.get_cell(k, "best")) == BEST]
        assert best_rows == ["103"]  # exactly one best mark, on the best candidate
        assert str(table.get_cell("102", "cache")) == "hit"
        assert str(table.get_cell("104", "cache")) == "cut 1"  # raced out after one dev example
        assert str(table.get_cell("105", "cache")) == ""
        plot = screen.query_one("#run-plot", BestPlot)
        assert plot._series[0][2][-1] == 0.8 and len(plot._series[0][1]) == 10
        result = text_of(app, "#run-result-text")
        assert "Finished" in result and "Pick the bigger one." in result
        assert "dev 0.800" in result and "test 0.667" in result
        assert "racing skipped 2 dev answers (1 candidate cut)" in result


async def test_the_counts_and_the_result_show_the_same_paid_calls(fake_engine) -> None:
    """The counts line (top) and the result (bottom) read the same engine totals: once the run has finished,
    that is its summary, which adds the test calls to those of the last scored candidate."""
    app = IZApp(config=default_config(), engine_factory=fake_engine("finish"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.state == "finished", what="the run to finish")
        await pilot.pause()
        paid = paid_calls(screen.summary["calls"], screen.summary["calls_saved"])  # "9 calls · 3 saved by cache"
        counts, result = text_of(app, "#run-counts"), text_of(app, "#run-result-text")
        assert counts == f"10/10 evals · {paid}"
        assert f"10 evaluations · {paid} ·" in result
        assert "27 calls" not in counts  # the last scored candidate's count, before the summary came


async def test_cancel_with_the_key(fake_engine) -> None:
    factory = fake_engine("hang")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.query_one("#run-cands", DataTable).row_count == 2, what="2 rows")
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.state == "cancelled", what="cancelled")
        assert factory.engine.cancelled == [41]
        assert "Cancelled" in text_of(app, "#run-result-text")


async def test_cancel_with_the_button(fake_engine) -> None:
    factory = fake_engine("hang")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.query_one("#run-cands", DataTable).row_count == 2, what="2 rows")
        await pilot.click("#btn-cancel")
        await wait_for(pilot, lambda: factory.engine.cancelled == [41], what="cancel sent")


async def test_a_failed_run_says_what_to_do(fake_engine) -> None:
    app = IZApp(config=default_config(), engine_factory=fake_engine("fail"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.state == "failed", what="failure")
        text = text_of(app, "#run-result-text")
        assert "The run failed" in text and "refused the connection" in text
        assert "What to do: start the server" in text


async def test_a_dead_engine_is_a_message_not_a_traceback(fake_engine) -> None:
    app = IZApp(config=default_config(), engine_factory=fake_engine("die"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.state == "failed", what="failure")
        text = screen_text(app)
        assert "The run failed" in text and "MemoryError: out of memory" in text
        assert "Traceback" not in text and 'File "' not in text
        assert "What to do" in text


async def test_open_the_finished_run_in_the_history(fake_engine, filled) -> None:
    app = IZApp(config=default_config(), engine_factory=fake_engine("finish"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        await wait_for(pilot, lambda: screen.state == "finished", what="finish")
        screen.run_id = filled["runs"][0]  # the fake's run id is not in the history; point at a real run
        screen.best_id = filled["best"][screen.run_id]
        await pilot.press("o")
        hist = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen, what="history")
        await pilot.pause()
        assert hist.filter_bar.filters()["run_id"] == screen.run_id
        assert hist.table.current_id() == screen.best_id
        assert {r["run_id"] for r in hist.table.candidates.values()} == {screen.run_id}


async def test_escape_goes_back_and_quit_closes_the_engine(fake_engine) -> None:
    factory = fake_engine("hang")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await _start(pilot, app)
        await wait_for(pilot, lambda: factory.engine.requests, what="started")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("q")
    assert factory.engine.closed


async def test_resume_an_interrupted_run_from_the_history(fake_engine, filled, history) -> None:
    run_id = filled["runs"][1]
    history.update_run(run_id, status="cancelled")
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        hist = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen, what="history")
        hist.show_run(run_id)
        await pilot.pause()
        await pilot.press("u")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen, what="run screen")
        await wait_for(pilot, lambda: ("resume_run", {"run_id": run_id}) in factory.engine.requests, what="resume")
        table = screen.query_one("#run-cands", DataTable)
        assert table.row_count == 4  # what the run had already scored, from the history
        assert screen.query_one("#run-bar", ProgressBar).progress == 4
        assert screen.state == "running"


async def test_a_finished_run_is_not_resumed(fake_engine, filled) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("h", "u")
        await pilot.pause()
        assert isinstance(app.screen, HistoryScreen)
        assert not hasattr(factory, "engine")  # the engine was never needed


def _burst(run_id: int, first: int, n: int) -> list:
    """Candidates ``first``..``n - 1`` of a run: all proposed at once, then each scored (as an engine sends a
    batch), the best moving to the last one that beats it."""
    proposed = [CandidateProposed(run_id, 100 + i, i // 25, i, f"Instruction number {i}.") for i in range(first, n)]
    scored, best, best_id = [], 0.6, 101  # the fake engine's best so far
    for i in range(first, n):
        score = round((i * 37 % 100) / 100, 2)
        is_best = score > best
        if is_best:
            best, best_id = score, 100 + i
        scored.append(CandidateScored(run_id, 100 + i, i // 25, i, f"Instruction number {i}.", score, False, None,
                                      i + 1, n, (i + 1) * 3, 0, best, best_id, is_best))
    return [*proposed, *scored]


async def test_a_burst_of_events_all_reach_the_table(fake_engine, monkeypatch) -> None:
    """Events are applied in batches (a timer flushes them): none may be lost, the table, the bar, the counts
    and the plot end up as if each had been shown on its own, and the plot is redrawn once a batch."""
    draws: list[int] = []
    set_series = BestPlot.set_series

    def counted(self, series):
        draws.append(len(series[0][1]))
        set_series(self, series)

    monkeypatch.setattr(BestPlot, "set_series", counted)
    factory = fake_engine("hang")  # two candidates, then it waits: the rest is the burst below
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        table = screen.query_one("#run-cands", DataTable)
        await wait_for(pilot, lambda: str(table.get_cell("101", "dev")) == "0.600", what="2 rows scored")
        n = 80
        events = _burst(41, 2, n)
        for ev in events:  # all at once, as a fast engine's batch arrives
            factory.engine.on_event(ev)
        last = events[-1]
        await wait_for(pilot, lambda: str(table.get_cell(str(100 + n - 1), "dev")) == fmt_score(last.dev_score),
                       what="the last candidate scored")
        assert table.row_count == n
        for ev in events:
            if isinstance(ev, CandidateScored):
                assert str(table.get_cell(str(ev.candidate_id), "dev")) == fmt_score(ev.dev_score)
                assert str(table.get_cell(str(ev.candidate_id), "instruction")) == ev.instruction
        best_rows = [k.value for k in table.rows if str(table.get_cell(k, "best")) == BEST]
        assert best_rows == [str(last.best_candidate_id)]
        bar = screen.query_one("#run-bar", ProgressBar)
        assert bar.total == n and bar.progress == n
        assert text_of(app, "#run-counts").startswith(f"{n}/{n} evals")
        plot = screen.query_one("#run-plot", BestPlot)
        assert plot._series[0][1] == [float(i + 1) for i in range(n)]
        assert plot._series[0][2][-1] == last.best_dev_score
        assert len(draws) <= 2 + 3  # the two candidates before, then a few batches: not one draw per event


async def test_the_end_of_a_run_shows_with_everything_before_it(fake_engine) -> None:
    """The run's end is applied at once, with the events still queued before it: the result never shows
    before the last candidates."""
    factory = fake_engine("hang")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _start(pilot, app)
        table = screen.query_one("#run-cands", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="2 rows")
        n = 40
        events = _burst(41, 2, n)
        best_id = events[-1].best_candidate_id
        summary = {"run_id": 41, "task": "larger_animal", "method": "instructzero", "status": "finished",
                   "best_candidate_id": best_id, "best_instruction": f"Instruction number {best_id - 100}.",
                   "dev_score": events[-1].best_dev_score, "test_score": 0.5, "evaluations": n, "calls": n * 3,
                   "calls_saved": 0, "tokens": 0, "seconds": 4.0}
        for ev in [*events, RunFinished(41, "finished", None, summary)]:
            factory.engine.on_event(ev)
        await wait_for(pilot, lambda: screen.state == "finished", what="finished")
        assert table.row_count == n  # at the moment the run is shown finished
        assert str(table.get_cell(str(100 + n - 1), "dev")) == fmt_score(events[-1].dev_score)
        assert screen.query_one("#run-bar", ProgressBar).progress == n
        assert f"{n} evaluations" in text_of(app, "#run-result-text")
