"""End to end with the real engine subprocess: Home → live run → history → rerank top 3 → export the best → quit.

Slow (the engine loads the 135M generator and starts the embedded llama.cpp server, then scores a tiny budget),
so it is marked ``integration``; everything else in tests/tui runs in seconds against a pre-filled history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, ProgressBar, Select

from engine.store import open_history
from iz_tui.app import IZApp
from iz_tui.screens.history import HistoryScreen
from iz_tui.screens.home import HomeScreen
from iz_tui.screens.modals import ExportModal, RerankModal
from iz_tui.screens.run import RunScreen

from .conftest import default_config
from .helpers import ready, screen_text, text_of, wait_for

RUN_TIMEOUT = 600.0


@pytest.mark.integration
@pytest.mark.timeout(900)
async def test_run_rerank_export_with_the_real_engine(workdir: Path) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        home = app.screen
        assert isinstance(home, HomeScreen) and home.selected_task == "antonyms"
        for attr, value in (("evaluations", 4), ("n_init", 2), ("batch_size", 2), ("n_dev", 3), ("n_test", 3)):
            home.query_one(f"#num-{attr}", Input).value = str(value)
        await pilot.pause()
        assert home.query_one("#preset", Select).value == "custom"
        await pilot.press("ctrl+r")
        run = await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen, what="run screen")

        await wait_for(pilot, lambda: run.state in ("finished", "failed", "stopped"), timeout=RUN_TIMEOUT,
                       what="the run to finish")
        assert run.state == "finished", text_of(app, "#run-result-text")
        assert run.query_one("#run-bar", ProgressBar).progress == 4
        # Four new instructions were paid for; a repeat (free) is listed too, as in the store.
        rows = run.query_one("#run-cands", DataTable).row_count
        assert rows >= 4 and rows == len(open_history().candidates(run.run_id))
        result = text_of(app, "#run-result-text")
        assert "Finished" in result and "best:" in result and "test " in result
        assert "Traceback" not in screen_text(app)
        run_id, best_id = run.run_id, run.best_id
        assert run_id is not None and best_id is not None

        # Open it in the history: filtered to the run, the cursor on its best candidate.
        await pilot.press("o")
        hist = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen, what="history")
        await wait_for(pilot, lambda: hist.filter_bar.filters()["run_id"] == run_id and hist.table.candidates,
                       what="its rows")
        assert hist.table.current_id() == best_id

        # Rerank the top 3 on the test split.
        await pilot.press("r")
        modal = await wait_for(pilot, lambda: ready(app.screen, RerankModal), what="modal")
        await wait_for(pilot, lambda: modal.query_one("#rerank-run", Select).value == run_id, what="run chosen")
        await pilot.click(".ok")
        await wait_for(pilot, lambda: getattr(hist, "rerank_results", None), timeout=RUN_TIMEOUT, what="rerank")
        reranked = {r["candidate_id"] for r in hist.rerank_results}
        assert 1 <= len(reranked) <= 3
        assert all(r["split"] == "test" for r in hist.rerank_results)
        await wait_for(pilot, lambda: all(hist.table.candidates[c]["rerank_score"] is not None for c in reranked),
                       what="rows")
        assert hist.query_one("#sort", Select).value == "rerank"
        top = max(hist.rerank_results, key=lambda r: r["rerank_score"])["rerank_score"]
        first = hist.table.candidates[int(hist.query_one("#hist-table", DataTable).ordered_rows[0].key.value)]
        assert (first["rerank_score"] or first["test_score"]) >= top - 1e-9

        # Export the best (the top row now) as JSON.
        table = hist.query_one("#hist-table", DataTable)
        table.move_cursor(row=0)
        best_now = hist.table.current_id()
        await pilot.press("space", "e")
        export = await wait_for(pilot, lambda: ready(app.screen, ExportModal), what="export")
        export.query_one("#export-path", Input).value = "best.json"
        await pilot.click(".ok")
        await wait_for(pilot, lambda: (workdir / "best.json").exists(), what="export file")
        data = json.loads((workdir / "best.json").read_text())
        assert [c["id"] for c in data["candidates"]] == [best_now]
        assert data["runs"][0]["id"] == run_id

        client = app._client
        assert client is not None and client.alive
        await pilot.press("escape", "escape")
        await pilot.press("q")
    assert client.proc is not None and client.proc.returncode is not None  # the engine was shut down
