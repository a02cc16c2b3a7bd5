"""History: search, filters, sorting, details, star, note, rerank, export, copy, compare, palette, help, in-run
repeats, grouping, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.css.stylesheet import Stylesheet
from textual.widgets import Checkbox, DataTable, Input, Select

from engine.usage import Usage
from iz_tui.app import IZApp
from iz_tui.screens.compare import CompareScreen
from iz_tui.screens.detail import CandidateScreen
from iz_tui.screens.help import HelpScreen
from iz_tui.screens.history import HistoryScreen
from iz_tui.screens.modals import CompareModal, ExportModal, NoteModal, RerankModal
from iz_tui.screens.side_by_side import SideBySideScreen
from iz_tui.widgets.history_table import PAGE

from .conftest import default_config
from .helpers import ready, screen_text, text_of, wait_for


async def _history(pilot, app) -> HistoryScreen:
    await pilot.pause()
    await pilot.press("h")
    return await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen, what="history")


def _ids(screen: HistoryScreen) -> list[int]:
    table = screen.query_one("#hist-table", DataTable)
    return [int(row.key.value) for row in table.ordered_rows]


async def test_lists_every_scored_candidate_best_first(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        ids = _ids(screen)
        assert len(ids) == 12  # the repeat of an instruction within a run is left out
        devs = [screen.table.candidates[i]["dev_score"] for i in ids]
        assert devs == sorted(devs, reverse=True)
        assert "12 candidates" in text_of(app, "#hist-info")


async def test_full_text_search_and_filters(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        await pilot.press("slash")
        assert app.focused is screen.query_one("#search", Input)
        await pilot.press(*"larger")
        await wait_for(pilot, lambda: len(screen.table.candidates) == 2, what="search results")
        assert all("larger" in r["instruction"].lower() for r in screen.table.candidates.values())
        assert screen.query_one("#sort", Select).value == "relevance"
        await pilot.press("enter")  # back to the table
        assert app.focused is screen.query_one("#hist-table", DataTable)
        screen.query_one("#search", Input).value = ""
        await wait_for(pilot, lambda: len(screen.table.candidates) == 12, what="all again")
        screen.query_one("#f-run", Select).value = filled["runs"][1]
        await wait_for(pilot, lambda: len(screen.table.candidates) == 4, what="run filter")
        screen.query_one("#f-run", Select).clear()
        screen.query_one("#f-method", Select).value = "ape"
        await wait_for(pilot, lambda: len(screen.table.candidates) == 3, what="method filter")
        screen.query_one("#f-method", Select).clear()
        screen.query_one("#f-task", Select).value = "first_letter"
        await wait_for(pilot, lambda: len(screen.table.candidates) == 3, what="task filter")
        screen.query_one("#f-task", Select).clear()
        screen.query_one("#f-min", Input).value = "0.9"
        await wait_for(pilot, lambda: len(screen.table.candidates) == 2, what="min score")
        screen.query_one("#f-min", Input).value = ""
        screen.query_one("#f-max", Input).value = "0.1"
        await wait_for(pilot, lambda: len(screen.table.candidates) == 2, what="max score")
        screen.query_one("#f-max", Input).value = ""
        screen.query_one("#starred", Checkbox).value = True
        await wait_for(pilot, lambda: len(screen.table.candidates) == 1, what="starred")
        screen.query_one("#f-method", Select).value = "random"
        await wait_for(pilot, lambda: len(screen.table.candidates) == 0, what="nothing")
        assert "no candidates match" in text_of(app, "#hist-info")


async def test_sort_orders(filled, history) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        history.set_mark(3, manual_rank=1)
        screen.query_one("#sort", Select).value = "newest"
        await wait_for(pilot, lambda: _ids(screen)[0] == 13, what="newest first")
        screen.query_one("#sort", Select).value = "rank"
        await wait_for(pilot, lambda: _ids(screen)[0] == 3, what="manual rank first")
        screen.query_one("#sort", Select).value = "rerank"
        await wait_for(pilot, lambda: _ids(screen)[0] == filled["best"][filled["runs"][2]], what="best test")
        await pilot.press("o")  # cycles to the next order
        await pilot.pause()
        assert screen.query_one("#sort", Select).value == "newest"


async def test_star_and_note(filled, history) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        cid = screen.table.current_id()
        assert cid == filled["best"][filled["runs"][0]]  # starred already
        await pilot.press("s")
        assert not history.candidate(cid)["star"]
        await pilot.press("s")
        assert history.candidate(cid)["star"] == 1
        await pilot.press("down", "n")
        modal = await wait_for(pilot, lambda: ready(app.screen, NoteModal), what="note modal")
        modal.query_one("#note-input", Input).value = ""
        await pilot.press(*"too vague", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        other = screen.table.current_id()
        assert other != cid
        assert history.candidate(other)["note"] == "too vague"
        assert "too vague" in text_of(app, "#hist-info")


async def test_details_show_outputs_and_scores(filled, history) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        cid = screen.table.current_id()
        await pilot.press("enter")
        detail = await wait_for(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen, what="detail")
        table = detail.query_one("#detail-outputs", DataTable)
        assert table.row_count == 6  # 3 dev + 3 test outputs
        assert "Pick the bigger animal of the pair." in text_of(app, "#detail-instruction")
        assert "the clear winner" in text_of(app, "#detail-instruction")
        scores = text_of(app, "#detail-scores")
        assert "dev 1.000 on 3 examples" in scores and "test 0.700 on 3 test examples" in scores
        await pilot.press("s")
        await pilot.pause()
        assert not history.candidate(cid)["star"]
        await pilot.press("n")
        await wait_for(pilot, lambda: ready(app.screen, NoteModal), what="note")
        app.screen.query_one("#note-input", Input).value = "rechecked"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "rechecked" in text_of(app, "#detail-instruction"), what="note shown")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        await pilot.pause()
        assert not screen.table.candidates[cid]["star"]  # the list reloaded the mark made in the detail view


async def test_a_sampled_candidate_says_so(filled, history) -> None:
    """A soft prompt's text that came from a second, sampled try (its greedy text was a repeat) is marked in the
    list's status line and in the detail view; a greedy one is not."""
    app = IZApp(config=default_config())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _history(pilot, app)
        cid = screen.table.current_id()
        with history.transaction():
            history.db.execute("update candidates set decoding = 'sampled' where id = ?", [cid])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen, what="detail")
        assert "sampled (its soft prompt's greedy text was already in the run)" in text_of(app, "#detail-head")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        await wait_for(pilot, lambda: screen.table.current_id() == cid
                       and " · sampled" in screen.table.info(narrowed=False), what="the list reloaded the mark")
        with history.transaction():
            history.db.execute("update candidates set decoding = 'greedy' where id = ?", [cid])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen, what="detail again")
        assert "sampled" not in text_of(app, "#detail-head")


async def test_a_raced_out_candidate_says_so(filled, history) -> None:
    """A candidate racing stopped early (it could no longer beat the run's best) says so, with how many dev
    examples its score rests on, in the list's status line and in the detail view; a fully scored one does not."""
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _history(pilot, app)
        cid = screen.table.current_id()
        with history.transaction():
            history.db.execute("update candidates set stopped_early = 1, scores_json = '[0.0, 1.0, 0.0]' "
                               "where id = ?", [cid])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen, what="detail")
        scores = text_of(app, "#detail-scores")
        assert "on 3 examples" in scores and "raced out" in scores
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        await wait_for(pilot, lambda: screen.table.current_id() == cid
                       and "raced out after 3 dev examples" in screen.table.info(narrowed=False),
                       what="the list reloaded the mark")
        assert "italic" in str(screen.table.get_cell(str(cid), "dev").style)  # a partial mean, set apart
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.table.current_id() != cid, what="the next row")
        assert "raced out" not in screen.table.info(narrowed=False)
        assert "italic" not in str(screen.table.get_cell(str(screen.table.current_id()), "dev").style)


async def test_rerank_selected_candidates(filled, fake_engine, history) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        await pilot.press("down", "down", "space", "space")
        chosen = list(screen.table.selected)
        assert len(chosen) == 2
        await pilot.press("r")
        modal = await wait_for(pilot, lambda: ready(app.screen, RerankModal), what="modal")
        modal.query_one("#rerank-n", Input).value = "7"
        await pilot.click(".ok")
        await wait_for(pilot, lambda: screen.query_one("#sort", Select).value == "rerank", what="sorted by rerank")
        await wait_for(pilot, lambda: all(screen.table.candidates[c]["rerank_score"] is not None for c in chosen), what="new")
        assert factory.engine.reranked == [chosen]
        ids = _ids(screen)
        # the rerank column shows the new scores, and the list sorts by them (rerank, then test, then dev)
        keyed = [screen.table.candidates[i].get("rerank_score") or screen.table.candidates[i].get("test_score") or -1 for i in ids]
        assert keyed == sorted(keyed, reverse=True)
        table = screen.query_one("#hist-table", DataTable)
        assert str(table.get_cell(str(chosen[1]), "rerank")) == "0.250"


async def test_rerank_top_k_of_a_run(filled, fake_engine) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        run1 = filled["runs"][0]
        await pilot.press("r")
        modal = await wait_for(pilot, lambda: ready(app.screen, RerankModal), what="modal")
        await wait_for(pilot, lambda: modal.query_one("#rerank-run", Select).value == run1, what="run")
        assert modal.query_one("#rerank-k", Input).value == "3"
        await pilot.click(".ok")
        await wait_for(pilot, lambda: factory.engine.reranked, what="rerank sent")
        # top 3 by dev score, one per distinct instruction (candidate 5 repeats candidate 2's instruction)
        assert factory.engine.reranked == [[4, 2, 6]]
        await wait_for(pilot, lambda: screen.filter_bar.filters()["run_id"] == run1, what="run shown")
        await wait_for(pilot, lambda: _ids(screen)[:3] == [6, 2, 4], what="sorted by the new scores")


async def test_rerank_failure_is_a_notification(filled, fake_engine) -> None:
    factory = fake_engine("die")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await _history(pilot, app)
        await pilot.press("r")
        await wait_for(pilot, lambda: ready(app.screen, RerankModal), what="modal")
        await pilot.click(".ok")
        await wait_for(pilot, lambda: any("Rerank failed" in (n.title or "") for n in app._notifications),
                       what="notification")
        assert not screen._reranking


async def test_export_selection_as_json_and_run_as_markdown(filled, workdir: Path) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        await pilot.press("space", "space")
        chosen = list(screen.table.selected)
        await pilot.press("e")
        modal = await wait_for(pilot, lambda: ready(app.screen, ExportModal),
                              what="export")
        assert modal.query_one("#export-path", Input).value == "iz-selection.json"
        await pilot.click(".ok")
        await wait_for(pilot, lambda: (workdir / "iz-selection.json").exists(), what="json file")
        data = json.loads((workdir / "iz-selection.json").read_text())
        assert sorted(c["id"] for c in data["candidates"]) == sorted(chosen)
        await pilot.press("a")  # clear the selection: now the export is the highlighted candidate's run
        await pilot.pause()
        await pilot.press("e")
        modal = await wait_for(pilot, lambda: ready(app.screen, ExportModal),
                              what="export")
        modal.query_one("#export-format", Select).value = "md"
        await pilot.pause()
        assert modal.query_one("#export-path", Input).value == "iz-run-1.md"
        modal.query_one("#export-path", Input).value = "out/run1.md"
        await pilot.click(".ok")
        await wait_for(pilot, lambda: (workdir / "out" / "run1.md").exists(), what="md file")
        md = (workdir / "out" / "run1.md").read_text()
        assert md.startswith("# Run 1: larger_animal (instructzero)")
        assert "Pick the bigger animal of the pair." in md


async def test_copy_uses_osc52_and_pyperclip(filled, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyperclip

    copied: list[str] = []
    monkeypatch.setattr(pyperclip, "copy", copied.append)
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await _history(pilot, app)
        await pilot.press("c")
        assert copied == ["Pick the bigger animal of the pair."]
        assert app.clipboard == "Pick the bigger animal of the pair."


async def test_copy_without_a_system_clipboard_fails_quietly(filled, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyperclip

    def broken(_: str) -> None:
        raise pyperclip.PyperclipException("no clipboard")

    monkeypatch.setattr(pyperclip, "copy", broken)
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _history(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        assert app.clipboard == "Pick the bigger animal of the pair."
        assert any("OSC 52" in n.message for n in app._notifications)


async def test_compare_two_runs(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await _history(pilot, app)
        await pilot.press("v")
        modal = await wait_for(pilot, lambda: ready(app.screen, CompareModal), what="modal")
        # default: the newest run and the newest other run of the same task
        assert modal.query_one("#cmp-a", Select).value == filled["runs"][2]
        modal.query_one("#cmp-a", Select).value = filled["runs"][0]
        modal.query_one("#cmp-b", Select).value = filled["runs"][1]
        await pilot.click(".ok")
        cmp = await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen, what="compare")
        table = cmp.query_one("#cmp-table", DataTable)
        assert table.row_count == 2
        assert str(table.get_cell("1", "test")) == "0.700" and str(table.get_cell("2", "test")) == "0.400"
        series = cmp.query_one("#cmp-plot")._series
        assert [s[0] for s in series] == ["#1 instructzero", "#2 random"]
        assert series[0][2] == [1 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 1.0]
        assert "same task" in screen_text(app)


async def test_command_palette_and_help(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"history")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history via palette")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert "History" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "HomeScreen"


async def test_palette_actions_search_compare_rerank_export(filled, fake_engine, workdir: Path) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.run_action("search")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen, what="hist")
        await wait_for(pilot, lambda: app.focused is screen.query_one("#search", Input), what="search focus")
        await app.run_action("export")
        await wait_for(pilot, lambda: ready(app.screen, ExportModal),
                       what="export modal")
        assert app.screen.query_one("#export-path", Input).value == f"iz-run-{filled['runs'][2]}.json"
        await pilot.press("escape")
        await app.run_action("rerank_top")
        modal: Any = await wait_for(pilot, lambda: ready(app.screen, RerankModal), what="rr")
        await wait_for(pilot, lambda: modal.query_one("#rerank-run", Select).value == filled["runs"][2], what="run")
        await pilot.press("escape")
        await app.run_action("compare")
        await wait_for(pilot, lambda: ready(app.screen, CompareModal), what="compare modal")


async def test_empty_history_says_how_to_start() -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await _history(pilot, app)
        assert "no runs yet" in text_of(app, "#hist-info")
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, HistoryScreen)


def _add_run_repeating(history, texts: list[tuple[str, float]]) -> list[int]:
    """Another larger_animal run whose instructions repeat earlier runs' texts (dev scores as given)."""
    rid = history.create_run("larger_animal", "random", {"method": "random"}, {"name": "embedded"})
    ids = []
    for pos, (text, dev) in enumerate(texts):
        cid = history.add_candidate(rid, 0, pos, None, text)
        out = [{"example_index": 0, "input": "pigeon, cheetah", "answers": ["cheetah"], "output": "cheetah",
                "score": dev, "cache_hit": False}]
        history.record_score(cid, dev_score=dev, scores=[dev], outputs=out, usage=Usage.of_answers(out))
        ids.append(cid)
    history.update_run(rid, status="finished", evaluations=len(texts))
    return ids


async def _select(pilot, screen: HistoryScreen, *ids: int) -> None:
    for cid in ids:
        assert screen.table.move_to(cid), cid
        await pilot.press("space")


async def test_dups_toggle_lists_in_run_repeats_marked(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _history(pilot, app)
        assert 5 not in screen.table.candidates  # #5 repeats #2 in run 1: hidden by default
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen.table.candidates) == 13, what="repeats listed")
        assert screen.query_one("#dups", Checkbox).value
        assert screen.table.candidates[5]["duplicate_of"] == 2
        cell = screen.table.get_cell("5", "instruction")
        assert cell.plain == "= #2 Write the larger of the two animals." and "dim" in str(cell.style)
        assert "dim" in str(screen.table.get_cell("5", "dev").style)
        assert str(screen.table.get_cell("2", "instruction")) == "Write the larger of the two animals."  # the original
        screen.table.move_to(5)
        await pilot.pause()
        assert "repeats #2" in text_of(app, "#hist-info")
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen.table.candidates) == 12, what="repeats hidden again")


async def test_group_shows_each_text_once_with_its_count(filled, history) -> None:
    again = _add_run_repeating(history, [("Pick the bigger animal of the pair.", 0.5), ("Name the animal.", 0.9),
                                         ("Name the animal.", 0.2)])
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _history(pilot, app)
        assert len(screen.table.candidates) == 15
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.table.grouped and len(screen.table.candidates) == 12, what="grouped")
        rows = {r["instruction"]: r for r in screen.table.candidates.values()}
        assert len(rows) == 12  # one row per text
        assert rows["Name the animal."]["group_count"] == 3 and rows["Name the animal."]["id"] == again[1]  # best
        assert rows["Pick the bigger animal of the pair."]["group_count"] == 2
        assert rows["Pick the bigger animal of the pair."]["id"] == 4
        assert rows["Pick the bigger animal of the pair."]["test_score"] == 0.7  # the group's best test
        assert rows["Write the larger of the two animals."]["group_count"] == 1  # its in-run repeat is hidden
        assert str(screen.table.get_cell(str(again[1]), "count")) == "×3"
        assert str(screen.table.get_cell("4", "count")) == "×2"
        assert "12 instructions (grouped)" in text_of(app, "#hist-info")
        await pilot.press("d")  # the count takes in-run repeats too
        await wait_for(pilot, lambda: str(screen.table.get_cell("2", "count")) == "×2", what="repeat counted")
        assert len(screen.table.candidates) == 12
        screen.table.move_to(again[1])
        await pilot.press("enter")  # opens the group's best candidate
        detail = await wait_for(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen, what="detail")
        assert detail.candidate_id == again[1]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")
        await pilot.press("g")
        await wait_for(pilot, lambda: not screen.table.grouped and len(screen.table.candidates) == 16,
                       what="ungrouped, repeats still listed")


async def test_side_by_side_shows_both_outputs_and_marks_differences(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _history(pilot, app)
        # #4 (run 1's best: dev 1, 1, 1) and #10 (run 2's best: dev 1, 0, 1); both have test outputs
        await _select(pilot, screen, 4, 10)
        await pilot.press("b")
        sbs = await wait_for(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen, what="sbs")
        assert sbs.ids == (4, 10)
        assert [(r["split"], r["input"]) for r in sbs.rows] == [
            (s, i) for s in ("dev", "test") for i in ("pigeon, cheetah", "horse, skunk", "goldfish, deer")]
        table = sbs.query_one("#sbs-table", DataTable)
        assert table.row_count == 6
        for i, r in enumerate(sbs.rows):
            assert r["a"]["candidate_id"] == 4 and r["b"]["candidate_id"] == 10
            assert str(table.get_cell(str(i), "oa")) == r["a"]["output"]
            assert str(table.get_cell(str(i), "ob")) == r["b"]["output"]
        assert [r["mark"] for r in sbs.rows] == ["", "≠", "", "", "", ""]
        assert str(table.get_cell("1", "mark")) == "≠"
        assert str(table.get_cell("1", "oa")) == "horse" and str(table.get_cell("1", "ob")) == "I am not sure."
        head = text_of(app, "#sbs-head")
        assert "Pick the bigger animal of the pair." in head and "Write the larger animal." in head
        assert "dev: 3 examples in common · mean A 1.000 vs B 0.667 · 1 scored differently" in head
        assert "test 0.700" in head and "test 0.400" in head
        await pilot.press("f")  # only the differences
        await wait_for(pilot, lambda: table.row_count == 1, what="only differences")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back")


async def test_side_by_side_of_a_repeat_uses_its_originals_outputs(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _history(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: 5 in screen.table.candidates, what="repeats listed")
        await _select(pilot, screen, 1, 5)  # "Name the animal." (0, 1, 0) vs a repeat of #2 (1, 1, 0)
        await pilot.press("b")
        sbs = await wait_for(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen, what="sbs")
        assert [(r["a"]["score"], r["b"]["score"], r["mark"]) for r in sbs.rows] == [
            (0.0, 1.0, "≠"), (1.0, 1.0, ""), (0.0, 0.0, "")]
        assert "repeats #2" in text_of(app, "#sbs-head")


async def test_side_by_side_needs_exactly_two_selected(filled) -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        screen = await _history(pilot, app)

        def told(n: int) -> bool:
            return any(f"select exactly two candidates (space on each), then press b — {n} selected" in m.message
                       for m in app._notifications)

        await pilot.press("b")
        await wait_for(pilot, lambda: told(0), what="none selected")
        await _select(pilot, screen, 1, 2, 3)
        await pilot.press("b")
        await wait_for(pilot, lambda: told(3), what="three selected")
        assert isinstance(app.screen, HistoryScreen)
        await _select(pilot, screen, 3)  # unselect one: two left; the palette command opens them
        await app.run_action("side_by_side")
        sbs = await wait_for(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen, what="sbs")
        assert sbs.ids == (1, 2)


async def test_a_long_list_is_added_a_page_at_a_time(filled, history) -> None:
    """Only the first page of rows is added at once (a DataTable measures every row it is given); the rest
    follow the cursor, the scroll, ctrl+end and a jump to a candidate, and the counts, sort order, marks and selection
    cover every listed candidate."""
    _add_run_repeating(history, [(f"Instruction number {i}.", round(i / 400, 4)) for i in range(260)])
    app = IZApp(config=default_config())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _history(pilot, app)
        table = screen.table
        listed = list(table.candidates)
        assert len(listed) == 272 and "272 candidates" in text_of(app, "#hist-info")
        assert table.row_count == PAGE and _ids(screen) == listed[:PAGE]  # best first, the first page only
        devs = [table.candidates[i]["dev_score"] for i in listed]
        assert devs == sorted(devs, reverse=True)
        await pilot.press("pagedown", "pagedown", "pagedown", "pagedown")  # the cursor nears the last row added
        await wait_for(pilot, lambda: table.row_count > PAGE, what="more rows as the cursor goes down")
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: table.current_id() == listed[-1], what="the last listed candidate")
        assert _ids(screen) == listed
        await pilot.press("space")  # select it
        assert table.selected == [listed[-1]]
        screen.reload(keep_cursor=False)  # from the first page again
        await pilot.pause()
        assert table.row_count == PAGE and table.current_id() == listed[0]
        table.scroll_end(animate=False)  # the mouse wheel, down to the last row added
        await wait_for(pilot, lambda: table.row_count > PAGE, what="more rows as the view nears the end")
        screen.reload(keep_cursor=False)
        await pilot.pause()
        assert table.row_count == PAGE
        far = listed[230]
        assert table.move_to(far)  # a candidate past the rows added: added on the way
        await pilot.pause()
        assert table.current_id() == far and _ids(screen)[230] == far
        await pilot.press("s")  # star it
        assert history.candidate(far)["star"] == 1
        assert str(table.get_cell(str(far), "star")) == "★"
        table.show_star(listed[-1], True)  # a row not added yet: drawn when it is
        assert table.candidates[listed[-1]]["star"] == 1
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: table.current_id() == listed[-1], what="the end again")
        assert str(table.get_cell(str(listed[-1]), "star")) == "★"
        assert str(table.get_cell(str(listed[-1]), "sel")) == "✓"  # the selection survived the reload
        assert "272 candidates · 1 selected" in text_of(app, "#hist-info")


def _styles(screen: HistoryScreen) -> dict[int, Any]:
    """Every node's rules and its component classes' rules: what a restyle sets."""
    return {
        id(node): (dict(node.styles.base._rules),
                   {name: dict(styles.base._rules) for name, styles in node._component_styles.items()})
        for node in screen.walk_children(with_self=True)
    }


async def test_a_screen_shown_the_first_time_is_styled_once_and_completely(filled, monkeypatch) -> None:
    restyled: list[list[Any]] = []
    real = Stylesheet.update_nodes

    def spy(self: Stylesheet, nodes: Any, animate: bool = False) -> None:
        restyled.append(list(nodes))
        real(self, restyled[-1], animate=animate)

    monkeypatch.setattr(Stylesheet, "update_nodes", spy)
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _history(pilot, app)
        await wait_for(pilot, lambda: screen.table.row_count, what="rows")
        await pilot.pause()
        assert len(_styles(screen)) > 30 and not any(screen in nodes for nodes in restyled)  # not restyled whole
        before = _styles(screen)
        app.stylesheet.update_nodes(screen.walk_children(with_self=True), animate=False)
        assert _styles(screen) == before  # a full restyle changes nothing: the skipped one had nothing to do
        await pilot.press("down", "slash")  # focus moves: what it touches is restyled as before
        await wait_for(pilot, lambda: isinstance(screen.focused, Input), what="search focused")
        assert any(screen.filter_bar.query_one("#search") in nodes for nodes in restyled)
