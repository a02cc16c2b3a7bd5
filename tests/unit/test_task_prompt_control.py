"""Prompt control in task.toml (system prompt, chat or completions, temperature, max tokens, stop), its preview in
``iz tasks show``, and merging an instruction-induction induce + execute pair into one task.

Why: what the black box is asked decides every score, so a task must be able to say exactly how it is asked, a
person must be able to see the exact prompt before paying for a run, and a changed setting must never be answered
from the cache of another (the settings travel as per-request overrides, part of the cache key). The loopback
endpoint records each request body, so these tests check what actually went over the wire.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from unit_fakes import FakeEndpoint, engine_with_fakes

from engine import paths
from engine.blackbox import BlackBox, score_instruction
from engine.config import EndpointProfile
from engine.errors import IZError, TaskError
from engine.store import open_history
from engine.tasks import Example, import_induce_execute, load_task, make_splits
from engine.tasks.model import PREVIEW_INSTRUCTION
from iz_tui.cli import cli

pytestmark = pytest.mark.usefixtures("no_real_generator")

ROWS = [{"input": f"word{i}", "output": f"WORD{i}"} for i in range(8)]


def write_task(name: str, toml: str, rows: list[dict[str, Any]] | None = None) -> Path:
    folder = paths.user_tasks_dir() / name
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text(f'name = "{name}"\ndescription = "test"\nmetric = "contains"\n'
                                      + textwrap.dedent(toml))
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows or ROWS)))
    return folder


CONTROLLED = '''\
system = "You are terse. {instruction}"
template = "Word: {input}\\nAnswer:"
temperature = 0.5
max_tokens = 7
stop = ["\\n", "Word:"]
'''


def test_prompt_settings_load_and_render() -> None:
    write_task("ctl", CONTROLLED)
    task = load_task("ctl")
    assert (task.system, task.temperature, task.max_tokens, task.stop, task.api) == (
        "You are terse. {instruction}", 0.5, 7, ("\n", "Word:"), None)
    ex = task.examples[0]
    chat = task.render("Shout it.", ex, "chat")
    assert (chat.system, chat.user) == ("You are terse. Shout it.", "Word: word0\nAnswer:")
    assert chat.text() == "[system]\nYou are terse. Shout it.\n[user]\nWord: word0\nAnswer:"
    completion = task.render("Shout it.", ex, "completions")
    assert completion.system is None
    assert completion.user == completion.text() == "You are terse. Shout it.\n\nWord: word0\nAnswer:"
    assert task.blackbox_overrides() == {"temperature": 0.5, "max_tokens": 7, "stop": ["\n", "Word:"]}


def test_a_task_without_settings_asks_exactly_as_before() -> None:
    write_task("plain", "")
    task = load_task("plain")
    assert task.blackbox_overrides() == {}
    assert task.render("Do.", task.examples[0], "chat").system is None
    assert task.notes == ()


@pytest.mark.parametrize(("toml", "fragment"), [
    ('api = "responses"\n', 'api must be "chat" or "completions"'),
    ("temperature = 3\n", "temperature must be a number from 0 to 2"),
    ('temperature = "hot"\n', "temperature must be a number from 0 to 2"),
    ("max_tokens = 0\n", "max_tokens must be a whole number from 1 to 4096"),
    ("max_tokens = true\n", "max_tokens must be a whole number from 1 to 4096"),
    ('stop = ["", "x"]\n', "stop must be a string or a list of non-empty strings"),
    ("stop = 3\n", "stop must be a string or a list of non-empty strings"),
    ('system = ""\n', "system must be a non-empty string"),
    ('template = "{input}"\n', "template lacks {instruction}"),
    ('system = "{instruction}"\ntemplate = "{instruction} only"\n', "template lacks {input}"),
    ("seed = 3\n", "unknown key(s) seed"),
])
def test_bad_prompt_settings_are_refused_at_load_time(toml: str, fragment: str) -> None:
    write_task("bad", toml)
    with pytest.raises(TaskError) as info:
        load_task("bad")
    assert fragment in str(info.value) and "task.toml" in str(info.value) and info.value.fix


def test_instruction_in_the_system_prompt_only() -> None:
    write_task("sys", 'system = "{instruction}"\ntemplate = "{input}"\nstop = "\\n"\n')
    task = load_task("sys")
    p = task.render("Uppercase the word.", task.examples[1], "chat")
    assert (p.system, p.user) == ("Uppercase the word.", "word1") and task.stop == ("\n",)
    write_task("twice", 'system = "{instruction}"\n')
    assert any("sent twice" in n for n in load_task("twice").notes)


def _score(bb: BlackBox, task: Any, instruction: str, examples: list[Example]) -> Any:
    async def go() -> Any:
        try:
            return await score_instruction(bb, task, instruction, examples)
        finally:
            await bb.aclose()

    return asyncio.run(go())


def test_the_settings_go_over_the_wire_and_into_the_cache_key(fake: FakeEndpoint, tmp_path: Path) -> None:
    write_task("ctl", CONTROLLED)
    task = load_task("ctl")
    history = open_history(tmp_path / "h.db")
    profile = EndpointProfile(base_url=fake.url, model="m", max_retries=0)
    _score(BlackBox(profile, history), task, "Shout it.", list(task.examples[:2]))
    # The two examples are asked concurrently, so they may arrive in either order.
    assert {r["path"] for r in fake.requests} == {"/v1/chat/completions"}
    first = next(r for r in fake.requests if "word0" in r["body"]["messages"][-1]["content"])
    body = first["body"]
    assert body["messages"] == [{"role": "system", "content": "You are terse. Shout it."},
                                {"role": "user", "content": "Word: word0\nAnswer:"}]
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.5, 7, ["\n", "Word:"])
    _score(BlackBox(profile, history), task, "Shout it.", list(task.examples[:2]))
    assert len(fake.requests) == 2, "the same settings are answered by the cache"
    # Another temperature is another question: never answered from the first one's cache.
    (paths.user_tasks_dir() / "ctl" / "task.toml").write_text(
        'name = "ctl"\nmetric = "contains"\n' + CONTROLLED.replace("0.5", "0.0"))
    _score(BlackBox(profile, history), load_task("ctl"), "Shout it.", list(task.examples[:2]))
    assert len(fake.requests) == 4 and fake.requests[-1]["body"]["temperature"] == 0.0
    history.close()


def test_a_task_asking_for_completions_is_scored_on_completions(fake: FakeEndpoint, tmp_path: Path) -> None:
    write_task("comp", CONTROLLED + 'api = "completions"\n')
    engine = engine_with_fakes(fake, tmp_path)
    assert engine.config.endpoints["fake"].api == "chat"

    async def go() -> Any:
        try:
            return await engine.run("comp", {"method": "manual", "n_demos": 1, "n_dev": 2, "n_test": 1},
                                    instructions=["Shout it."])
        finally:
            await engine.aclose()

    assert asyncio.run(go())["status"] == "finished"
    assert [r["path"] for r in fake.requests] == ["/v1/completions"] * 3
    prompt = fake.requests[0]["body"]["prompt"]
    assert prompt.startswith("You are terse. Shout it.\n\nWord: ") and "messages" not in fake.requests[0]["body"]
    # Called directly with a client of the other api, scoring refuses instead of silently asking the wrong way.
    with pytest.raises(IZError, match="asks for api = 'completions'"):
        _score(BlackBox(EndpointProfile(base_url=fake.url, model="m")), load_task("comp"), "x", [Example("a", ("b",))])


# --- iz tasks show --------------------------------------------------------------------------------------------


def test_show_prints_the_exact_prompt_of_one_example() -> None:
    write_task("ctl", CONTROLLED)
    out = CliRunner().invoke(cli, ["tasks", "show", "ctl"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "prompt for example 1 (chat, endpoint embedded; another endpoint may differ):" in text
    assert f"  | [system]\n  | You are terse. {PREVIEW_INSTRUCTION}\n  | [user]\n  | Word: word0\n  | Answer:" in text
    assert "set:      temperature = 0.5" in text and "set:      max_tokens = 7" in text
    assert 'set:      stop = ["\\n", "Word:"]' in text

    write_task("comp", CONTROLLED + 'api = "completions"\n')
    text = CliRunner().invoke(cli, ["tasks", "show", "comp"]).output
    assert "prompt for example 1 (completions, set by the task):" in text
    assert f"  | You are terse. {PREVIEW_INSTRUCTION}\n  | \n  | Word: word0\n  | Answer:" in text


# --- induce + execute -----------------------------------------------------------------------------------------


def _ii_file(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """A tiny file in the instruction-induction format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"metadata": {"num_examples": len(pairs)},
           "examples": {str(i): {"input": a, "output": b} for i, (a, b) in enumerate(pairs, 1)}}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    induce = _ii_file(tmp_path / "induce" / "negation.json", [(f"It is {w}.", f"It is not {w}.")
                                                                 for w in ("red", "big", "old", "new")])
    execute = _ii_file(tmp_path / "execute" / "negation.json", [(f"It is {w}.", f"It is not {w}.")
                                                                   for w in ("old", "hot", "wet", "dry", "far", "low")])
    return induce, execute


def test_induce_and_execute_merge_as_in_the_paper(pair: tuple[Path, Path]) -> None:
    task = import_induce_execute(*pair)
    assert task.name == "negation" and task.metric == "exact_match"
    assert [e.input for e in task.demos] == ["It is red.", "It is big.", "It is old.", "It is new."]
    assert [e.input for e in task.examples] == ["It is hot.", "It is wet.", "It is dry.", "It is far.", "It is low."]
    assert any("dropped 1 execute example(s)" in n for n in task.notes)
    assert (task.source / "demos.jsonl").is_file()
    assert load_task("negation").demos == task.demos, "demos.jsonl reads back with the ordinary loader"
    s = make_splits(task, n_demos=3, n_dev=3, n_test=5, seed=0)
    assert len(s.demos) == 3 and set(s.demos) <= set(task.demos)
    assert set(s.dev + s.test) <= set(task.examples) and (len(s.dev), len(s.test)) == (3, 2)
    assert any("test uses 2 instead of 5" in n for n in s.notes)
    assert make_splits(task, n_demos=9, n_dev=2, n_test=0, seed=1).notes == [
        "task negation has 4 demos: the generator sees 4 instead of 9"]


def test_pooled_merge_is_one_pool(pair: tuple[Path, Path]) -> None:
    task = import_induce_execute(*pair, name="neg_pool", metric="contains", pooled=True)
    assert task.demos == () and len(task.examples) == 9 and task.metric == "contains"
    assert not (task.source / "demos.jsonl").exists()


def test_cli_imports_a_pair(pair: tuple[Path, Path]) -> None:
    induce, execute = map(str, pair)
    out = CliRunner().invoke(cli, ["tasks", "import", "--induce", induce, "--execute", execute, "--name", "neg"])
    assert out.exit_code == 0, out.output
    assert "imported task neg: 5 examples + 4 demos, metric exact_match" in out.output
    assert "dropped 1 execute example(s)" in out.output
    show = CliRunner().invoke(cli, ["tasks", "show", "neg"]).output
    assert "demos:    4 (shown to the generator only" in show
    for args, fragment in [(["--induce", induce], "--induce and --execute go together"),
                           ([induce, "--induce", induce, "--execute", execute], "not both"),
                           ([], "give the file to import"),
                           ([induce, "--pooled"], "--pooled only applies")]:
        bad = CliRunner().invoke(cli, ["tasks", "import", *args])
        assert bad.exit_code == 2 and fragment in bad.output, bad.output
    again = CliRunner().invoke(cli, ["tasks", "import", "--induce", induce, "--execute", execute, "--name", "neg"])
    assert again.exit_code == 2 and "exists already" in again.output


def test_a_pair_with_nothing_left_to_score_is_refused(tmp_path: Path) -> None:
    same = [("a b", "b a"), ("c d", "d c")]
    induce = _ii_file(tmp_path / "induce" / "x.json", same)
    execute = _ii_file(tmp_path / "execute" / "x.json", same)
    with pytest.raises(TaskError, match="every example's input is also in"):
        import_induce_execute(induce, execute)
    assert not paths.user_tasks_dir().exists() or not any(paths.user_tasks_dir().iterdir())
