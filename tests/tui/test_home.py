"""Home screen: tasks with a preview, presets, custom numbers, the manual method, starting a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.widgets import Input, OptionList, Select, TextArea

from engine.recent import FIRST_TASK, last_task
from iz_tui.app import IZApp
from iz_tui.requests import PRESETS, RunRequest
from iz_tui.screens.home import HomeScreen
from iz_tui.screens.modals import ImportTaskModal
from iz_tui.screens.run import RunScreen

from .conftest import default_config
from .helpers import ready, screen_text, text_of, wait_for


async def test_tasks_are_listed_with_a_preview() -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        options = screen.query_one("#tasks", OptionList)
        assert options.option_count >= 10
        # Nothing run yet: the task where the quick run shows the method's value (engine.recent.FIRST_TASK)
        assert screen.selected_task == FIRST_TASK == "antonyms"
        preview = text_of(app, "#task-preview")
        assert "antonyms" in preview and "contains" in preview and "242 examples" in preview
        assert "interior" in preview
        await pilot.press("down")
        assert screen.selected_task != "antonyms"
        assert screen.selected_task in text_of(app, "#task-preview")


async def test_the_first_screen_offers_the_task_last_run() -> None:
    from engine.store import open_history

    h = open_history()
    h.create_run("sentiment", "random", {"method": "random"}, {"name": "embedded"})
    h.create_run("larger_animal", "random", {"method": "random"}, {"name": "embedded"})
    h.close()
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen) and screen.selected_task == "larger_animal"
        assert "larger_animal" in text_of(app, "#task-preview")


def test_last_task_is_none_for_a_missing_or_foreign_file(tmp_path: Path) -> None:
    assert last_task(tmp_path / "none.db") is None
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert last_task(tmp_path / "junk.db") is None


async def test_presets_and_custom_numbers() -> None:
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        req = screen.validate()
        assert isinstance(req, RunRequest)
        assert req.settings["budget_evaluations"] == 10 and req.settings["n_init"] == 5
        assert req.settings["n_dev"] == 5 and req.settings["n_test"] == 10 and req.settings["n_iterations"] == 1
        await pilot.press("f3")
        await pilot.pause()
        req = screen.validate()
        assert isinstance(req, RunRequest)
        paper = PRESETS["paper"].settings()
        assert {k: req.settings[k] for k in paper} == paper
        assert paper["n_iterations"] == 5 and paper["budget_evaluations"] == 150
        # Editing a number switches the preset to "custom".
        screen.query_one("#num-evaluations", Input).value = "30"
        await pilot.pause()
        assert screen.query_one("#preset", Select).value == "custom"
        req = screen.validate()
        assert isinstance(req, RunRequest) and req.budget == 30
        # Nonsense is refused in words.
        screen.query_one("#num-n_init", Input).value = "50"
        await pilot.pause()
        assert "cannot exceed" in str(screen.validate())


async def test_manual_method_asks_for_instructions(fake_engine) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        screen.query_one("#method", Select).value = "manual"
        await pilot.pause()
        area = screen.query_one("#manual", TextArea)
        assert area.display and not area.has_class("hidden")
        assert "instructions you write" in str(screen.validate())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)  # refused, with a notification
        area.text = "Name the larger animal.\n\nWrite the bigger one.\n"
        await pilot.pause()
        assert "2 instructions" in text_of(app, "#estimate")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
        await wait_for(pilot, lambda: factory.engine.requests, what="start_run")
        name, params = factory.engine.requests[0]
        assert params["instructions"] == ["Name the larger animal.", "Write the bigger one."]
        assert params["settings"]["method"] == "manual"


async def test_start_button_opens_the_run_screen(fake_engine) -> None:
    factory = fake_engine("finish")
    app = IZApp(config=default_config(), engine_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.click("#start")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
        # the screen is up before its engine is (started in the background): wait for the request to reach it
        await wait_for(pilot, lambda: getattr(factory, "engine", None) and factory.engine.requests,
                       what="the start request")
        params = factory.engine.requests[0][1]
        assert params["task"] == "antonyms" and params["endpoint"] == "embedded"
        assert params["settings"]["budget_evaluations"] == 10
        assert "antonyms" in screen_text(app)


async def test_user_tasks_are_listed_beside_the_built_in_ones() -> None:
    import json

    from engine import paths

    folder = paths.user_tasks_dir() / "shout"
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text('name = "shout"\ndescription = "Say it in capitals."\nmetric = "contains"\n')
    rows = [{"input": w, "output": w.upper()} for w in ("cat", "dog", "owl", "bee", "ant", "elk", "yak", "emu",
                                                         "fox", "gnu", "hen", "jay", "koi", "pig", "ram", "rat")]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        options = app.screen.query_one("#tasks", OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert "shout (yours)" in labels and "larger_animal" in labels
        options.highlighted = labels.index("shout (yours)")
        await pilot.pause()
        assert "Say it in capitals." in text_of(app, "#task-preview") and "yours" in text_of(app, "#task-preview")


async def test_the_budget_line_shows_the_estimated_calls_tokens_and_money() -> None:
    from engine.config import Config, EndpointProfile
    from engine.cost import estimate_run
    from engine.tasks import load_task

    remote = "https://api.example.invalid/v1"
    paid = EndpointProfile(base_url=remote, model="m", price_input=0.15, price_output=0.6)
    app = IZApp(config=Config(endpoints={"paid": paid, "unpriced": EndpointProfile(base_url=remote, model="m")}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        quick = Config().run.with_overrides({"method": "instructzero", **PRESETS["quick"].settings()})
        est = estimate_run(load_task("antonyms"), quick, paid)
        line = text_of(app, "#estimate")
        assert f"≤ {est.calls} calls" in line and "tokens" in line and "free: local endpoint" in line
        screen.query_one("#endpoint", Select).value = "paid"
        await pilot.pause()
        assert f"~${est.money:.4f}" in text_of(app, "#estimate")
        # The "max $" field caps the run (and the estimate); without prices it is refused in words.
        screen.query_one("#max-cost", Input).value = "0.00001"
        await pilot.pause()
        assert "cut by the cost cap" in text_of(app, "#estimate")
        req = screen.validate()
        assert isinstance(req, RunRequest) and req.settings["budget_cost"] == 0.00001
        screen.query_one("#endpoint", Select).value = "unpriced"
        await pilot.pause()
        assert "unknown" in text_of(app, "#estimate")
        assert "price_input" in str(screen.validate())


async def _import_via_modal(pilot, app: IZApp, path: str, execute: str = "", name: str = "") -> Any:
    """Open the import dialog with `i`, fill it in and press Import; returns the dialog."""
    await pilot.press("i")
    modal = await wait_for(pilot, lambda: ready(app.screen, ImportTaskModal), what="the import dialog")
    modal.query_one("#import-path", Input).value = path
    modal.query_one("#import-execute", Input).value = execute
    modal.query_one("#import-name", Input).value = name
    await pilot.pause()
    await pilot.click(".ok")
    return modal


async def test_import_a_jsonl_file_from_the_home_screen(tmp_path: Path) -> None:
    from engine import paths

    rows = [{"input": w, "output": w.upper()} for w in ("cat", "dog", "owl", "bee", "ant", "elk", "yak", "emu")]
    data = tmp_path / "shout.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = IZApp(config=default_config())
    # Every message shown, kept here: a toast expires after a few seconds, which a loaded machine can outlast.
    shown: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (shown.append(str(message)), notify(message, **kw))[1]  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        await _import_via_modal(pilot, app, str(data))
        await wait_for(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_for(pilot, lambda: screen.selected_task == "shout", what="the new task selected")
        options = screen.query_one("#tasks", OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert "shout (yours)" in labels
        assert "8 examples" in text_of(app, "#task-preview")
        assert (paths.user_tasks_dir() / "shout" / "data.jsonl").is_file()
        assert any("imported shout (8 examples)" in m for m in shown)


async def test_a_bad_file_is_explained_in_the_import_dialog(tmp_path: Path) -> None:
    from engine import paths

    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"input": "cat", "output": "CAT"}\n{"input": "dog", \n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        modal = await _import_via_modal(pilot, app, str(bad))
        await wait_for(pilot, lambda: "fix" in text_of(app, "#import-status"), what="the error in the dialog")
        status = text_of(app, "#import-status")
        assert "broken.jsonl" in status and "line 2" in status
        assert app.screen is modal  # still open, to correct the path
        path_input = modal.query_one("#import-path", Input)
        path_input.value = str(empty)
        path_input.focus()
        await pilot.pause()
        await pilot.press("enter")  # Enter in a field submits, like the button
        await wait_for(pilot, lambda: "no examples" in text_of(app, "#import-status"), what="the second error")
        assert "fix" in text_of(app, "#import-status") and app.screen is modal
        user_dir = paths.user_tasks_dir()
        assert not user_dir.exists() or not any(user_dir.iterdir())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert "broken" not in app.screen._tasks


async def test_import_an_induce_execute_pair(tmp_path: Path) -> None:
    from engine.tasks import load_task

    def ii_file(folder: str, pairs: list[tuple[str, str]]) -> Path:
        path = tmp_path / folder / "opposite.json"
        path.parent.mkdir()
        examples = {str(i): {"input": a, "output": b} for i, (a, b) in enumerate(pairs, 1)}
        path.write_text(json.dumps({"metadata": {"num_examples": len(pairs)}, "examples": examples}))
        return path

    induce = ii_file("induce", [("hot", "cold"), ("up", "down"), ("big", "small")])
    execute = ii_file("execute", [("wet", "dry"), ("fast", "slow"), ("old", "new"), ("light", "dark"),
                                  ("hot", "cold")])
    app = IZApp(config=default_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        await _import_via_modal(pilot, app, str(induce), execute=str(execute), name="opposites")
        await wait_for(pilot, lambda: screen.selected_task == "opposites", what="the imported pair selected")
        task = load_task("opposites")
        assert [d.input for d in task.demos] == ["hot", "up", "big"]
        assert [e.input for e in task.examples] == ["wet", "fast", "old", "light"]  # "hot" was a demo
        assert "4 examples + 3 demos" in text_of(app, "#task-preview")
