"""Metrics for users' own tasks: ``regex``, ``json``, ``python = "metric.py:score"`` and ``judge``.

Why these tests: a task folder is written by hand, so every mistake in it must be caught when it is loaded (with
the loader's usual file-and-line messages), and a metric function that breaks while a run is scoring must stop the
run cleanly with its own traceback lines and the example that broke it, never a crash or a silent wrong score. The
judge's calls go through the black-box client: here a loopback endpoint records them, so the tests see that they
were made, cached on a repeat and counted in the run's usage. The real model as judge is in
tests/integration/test_task_custom_metrics.py.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from unit_fakes import FakeEndpoint, engine_with_fakes

from engine import paths
from engine.blackbox import BlackBox, score_instruction
from engine.config import Config, EndpointProfile
from engine.errors import ConfigError, IZError, TaskError
from engine.store import open_history
from engine.tasks import TASK_METRICS, Example, MetricError, load_task
from engine.tasks.metrics import json_match, regex, score
from engine.tasks.user_metrics import judge_prompt, judge_verdict
from engine.wire.events import Event, RunFailed

pytestmark = pytest.mark.usefixtures("no_real_generator")


def write_task(name: str, toml: str, rows: list[dict[str, Any]] | None = None,
               files: dict[str, str] | None = None) -> Path:
    """A user task folder (in the test's own IZ_HOME) with the given task.toml body after name/description."""
    folder = paths.user_tasks_dir() / name
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text(f'name = "{name}"\ndescription = "test"\n' + textwrap.dedent(toml))
    rows = rows if rows is not None else [{"input": f"in{i}", "output": f"out{i}"} for i in range(6)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for fname, body in (files or {}).items():
        (folder / fname).write_text(textwrap.dedent(body))
    return folder


def load_error(name: str, *fragments: str) -> TaskError:
    with pytest.raises(TaskError) as info:
        load_task(name)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert info.value.fix
    return info.value


def fake_profile(fake: FakeEndpoint, **kw: Any) -> EndpointProfile:
    return EndpointProfile(base_url=fake.url, model="fake-model", max_retries=0, **kw)


def _score(bb: BlackBox, task: Any, instruction: str, examples: list[Example], **kw: Any) -> Any:
    async def go() -> Any:
        try:
            return await score_instruction(bb, task, instruction, examples, **kw)
        finally:
            await bb.aclose()

    return asyncio.run(go())


def test_every_metric_is_listed_in_the_unknown_metric_message() -> None:
    assert set(TASK_METRICS) == {"exact_match", "contains", "f1", "exact_set", "regex", "json", "python", "judge"}
    write_task("t", 'metric = "bleu"\n')
    load_error("t", "unknown metric 'bleu'")
    with pytest.raises(TaskError, match="regex, json, python, judge"):
        load_task("t")


# --- regex ----------------------------------------------------------------------------------------------------


def test_regex_searches_the_stripped_output() -> None:
    assert regex("  The answer is 42.\n", [r"\b42\b"]) == 1.0
    assert regex("42 apples", [r"^\d+$"]) == 0.0 and regex(" 42 \n", [r"^\d+$"]) == 1.0
    assert regex("YES", ["yes"]) == 1.0 and regex("YES", ["yes"], case_sensitive=True) == 0.0
    assert regex("no", ["yes", "^n"]) == 1.0
    assert regex("", [".*"]) == 0.0, "saying nothing is never right"


def test_regex_task_loads_and_bad_patterns_are_refused_with_their_line() -> None:
    write_task("rx", 'metric = "regex"\n', [{"input": "2+2", "output": r"^\s*4\b"}, {"input": "3+3", "output": "6"}])
    task = load_task("rx")
    assert task.score("4, clearly", task.examples[0].answers) == 1.0
    write_task("badrx", 'metric = "regex"\n', [{"input": "a", "output": "x"}, {"input": "b", "output": "(unclosed"}])
    load_error("badrx", "data.jsonl, line 2", "'(unclosed' is not a valid regular expression")


# --- json -----------------------------------------------------------------------------------------------------


def test_json_compares_values_not_text() -> None:
    assert json_match('{"b": [1, 2], "a": "x"}', ['{"a": "x", "b": [1.0, 2]}']) == 1.0
    assert json_match('```json\n{"a": 1}\n```\nThat is all.', ['{"a": 1}']) == 1.0, "a Markdown fence is fine"
    assert json_match('{"a": 1} and more text', ['{"a": 1}']) == 1.0, "a run-on after the value is ignored"
    assert json_match('{"a": true}', ['{"a": 1}']) == 0.0, "true is not 1"
    assert json_match('{"a": 1, "b": 2}', ['{"a": 1}']) == 0.0
    assert json_match("not json", ['"not json"']) == 0.0
    assert json_match('"Paris"', ['"Paris"']) == 1.0 and json_match('"paris"', ['"Paris"']) == 0.0


def test_json_task_takes_json_values_and_refuses_invalid_answers() -> None:
    rows = [{"input": "Alice, 30", "output": {"name": "Alice", "age": 30}},
            {"input": "two", "output": 2}, {"input": "pair", "output": [[1, 2], "[2, 1]"]}]
    write_task("js", 'metric = "json"\n', rows)
    task = load_task("js")
    assert task.examples[0].answers == ('{"name": "Alice", "age": 30}',)
    assert task.score('{"age": 30, "name": "Alice"}', task.examples[0].answers) == 1.0
    assert task.examples[2].answers == ("[1, 2]", "[2, 1]")
    assert task.score("[2, 1]", task.examples[2].answers) == 1.0
    write_task("badjs", 'metric = "json"\n', [{"input": "a", "output": "{a: 1}"}])
    load_error("badjs", "data.jsonl, line 1", "is not valid JSON")


# --- python ---------------------------------------------------------------------------------------------------

METRIC_PY = """\
    def score(output, answers):
        words = output.lower().split()
        return sum(a.lower() in words for a in answers) / len(answers)
"""


def test_python_metric_is_loaded_from_the_task_folder_without_writing_to_it() -> None:
    folder = write_task("py", 'metric = "python"\npython = "metric.py:score"\n',
                        [{"input": "x", "output": ["red", "blue"]}], {"metric.py": METRIC_PY})
    task = load_task("py")
    assert task.python == "metric.py:score"
    assert task.score("Red and green", ["red", "blue"]) == 0.5
    assert not (folder / "__pycache__").exists(), "scoring must not write bytecode into the task folder"


@pytest.mark.parametrize(("toml", "files", "fragments"), [
    ('metric = "python"\n', {}, ['needs python = "FILE.py:FUNCTION"']),
    ('metric = "python"\npython = "metric.py"\n', {}, ['python must be "FILE.py:FUNCTION"']),
    ('metric = "python"\npython = "metric.py:score"\n', {}, ["python names metric.py, but there is no"]),
    ('metric = "python"\npython = "metric.py:grade"\n', {"metric.py": METRIC_PY},
     ["metric.py has no function grade", "functions there: score"]),
    ('metric = "python"\npython = "metric.py:score"\n', {"metric.py": "def score(output, answers)\n    return 1\n"},
     ["metric.py, line 1: invalid Python"]),
    ('metric = "python"\npython = "../metric.py:score"\n', {}, ["outside the task folder"]),
    ('metric = "exact_match"\npython = "metric.py:score"\n', {"metric.py": METRIC_PY},
     ["but metric = 'exact_match'"]),
])
def test_python_metric_mistakes_are_caught_at_load_time(toml: str, files: dict[str, str],
                                                         fragments: list[str]) -> None:
    folder = write_task("bad", toml, files=files)
    load_error("bad", "task.toml" if "line 1" not in fragments[0] else "metric.py", *fragments)
    assert not (folder / "__pycache__").exists(), "checking a metric never runs it"


BROKEN_PY = """\
    def helper(answers):
        return 1 / len([a for a in answers if a == "never"])

    def score(output, answers):
        return helper(answers)
"""


def test_a_failing_metric_names_its_own_lines_and_the_example(fake: FakeEndpoint) -> None:
    write_task("broken", 'metric = "python"\npython = "metric.py:score"\n',
               [{"input": "whale, mouse", "output": "whale"}], {"metric.py": BROKEN_PY})
    task = load_task("broken")
    with pytest.raises(MetricError) as info:
        _score(BlackBox(fake_profile(fake)), task, "Write the larger animal.", list(task.examples))
    problem = info.value.problem
    assert "metric.py:score failed on example 1 of 1 (input 'whale, mouse', answers 'whale', output 'elephant')" \
        in problem
    assert 'metric.py", line 5, in score' in problem and 'metric.py", line 2, in helper' in problem
    assert "ZeroDivisionError: division by zero" in problem
    assert "engine" not in problem, "only the metric file's frames, not the engine's"
    assert isinstance(info.value, TaskError) and "resume" in (info.value.fix or "")
    # It crosses the wire as itself (the engine runs in another process than the CLI / TUI).
    again = IZError.from_dict(info.value.to_dict())
    assert type(again) is MetricError and again.problem == problem


@pytest.mark.parametrize(("body", "shown"), [
    ("return 1.5", "returned 1.5 (float)"),
    ("return '0.5'", "returned '0.5' (str)"),
    ("return None", "returned None (NoneType)"),
    ("return float('nan')", "returned nan (float)"),
])
def test_a_metric_must_return_a_number_from_0_to_1(body: str, shown: str) -> None:
    write_task("ret", 'metric = "python"\npython = "metric.py:score"\n', files={
        "metric.py": f"def score(output, answers):\n    {body}\n"})
    task = load_task("ret")
    with pytest.raises(MetricError, match="a metric must return a number from 0 to 1") as info:
        task.score("x", ["y"])
    assert shown in info.value.problem


def test_an_edited_metric_is_loaded_again() -> None:
    folder = write_task("edit", 'metric = "python"\npython = "metric.py:score"\n', files={
        "metric.py": "def score(output, answers):\n    return 0\n"})
    task = load_task("edit")
    assert task.score("x", ["x"]) == 0.0
    (folder / "metric.py").write_text("def score(output, answers):\n    return True  # a bool counts as 1\n\n")
    assert task.score("x", ["x"]) == 1.0


def test_a_metric_that_fails_to_import_says_so() -> None:
    write_task("imp", 'metric = "python"\npython = "metric.py:score"\n', files={
        "metric.py": "import no_such_module_anywhere\n\ndef score(output, answers):\n    return 1\n"})
    task = load_task("imp")
    with pytest.raises(MetricError, match="could not be loaded") as info:
        task.score("x", ["x"])
    assert 'metric.py", line 1' in info.value.problem and "no_such_module_anywhere" in info.value.problem


def test_a_broken_metric_fails_the_run_cleanly_and_resume_works_once_fixed(
        fake: FakeEndpoint, tmp_path: Path) -> None:
    folder = write_task("runpy", 'metric = "python"\npython = "metric.py:score"\n', files={
        "metric.py": "def score(output, answers):\n    raise ValueError('no good')\n"})
    engine = engine_with_fakes(fake, tmp_path)
    settings = {"method": "manual", "n_demos": 1, "n_dev": 3, "n_test": 2}
    run_id = engine.create_run("runpy", settings, instructions=["Say it."])
    events: list[Event] = []

    async def go(resume: bool) -> Any:
        try:
            return await engine.execute(run_id, emit=events.append, resumed=resume)
        finally:
            await engine.aclose()

    with pytest.raises(MetricError):
        asyncio.run(go(False))
    row = engine.history.run(run_id)
    assert row["status"] == "failed"
    assert "metric.py:score failed on example 1 of 3" in row["error"] and "ValueError: no good" in row["error"]
    assert isinstance(events[-1], RunFailed) and "ValueError: no good" in events[-1].problem
    paid = len(fake.requests)
    assert paid == 3

    (folder / "metric.py").write_text("def score(output, answers):\n    return 0.25\n\n\n")
    summary = asyncio.run(go(True))
    assert summary["status"] == "finished" and summary["dev_score"] == 0.25
    assert len(fake.requests) == paid + 2, "the dev answers came from the cache; only the 2 test calls were paid"


# --- judge ----------------------------------------------------------------------------------------------------

JUDGE_TOML = """\
metric = "judge"

[judge]
rubric = "The answer names the larger animal."
endpoint = "judge"
"""


@pytest.mark.parametrize(("toml", "fragments"), [
    ('metric = "judge"\n', ['metric = "judge" needs a rubric']),
    ('metric = "judge"\n[judge]\nendpoint = "x"\n', ['metric = "judge" needs a rubric']),
    ('metric = "judge"\n[judge]\nrubric = "  "\n', ["rubric must be a non-empty string"]),
    ('metric = "judge"\n[judge]\nrubric = "r"\nmodel = "x"\n', ["unknown key(s) in [judge]: model"]),
    ('metric = "contains"\n[judge]\nrubric = "r"\n', ["a [judge] table, but metric = 'contains'"]),
])
def test_judge_mistakes_are_caught_at_load_time(toml: str, fragments: list[str]) -> None:
    write_task("j", toml)
    load_error("j", "task.toml", *fragments)


def test_judge_prompt_and_verdicts() -> None:
    prompt = judge_prompt("Be {exact}.", Example("cat, {input}", ("cat",)), "The cat")
    assert "Rubric: Be {exact}." in prompt and "Input: cat, {input}" in prompt and "Answer to grade: The cat" in prompt
    assert judge_verdict(" 7") == 0.7 and judge_verdict("Score: 10/10") == 1.0 and judge_verdict("12") == 1.0
    assert judge_verdict("0") == 0.0 and judge_verdict("no idea") is None


def _judge_config(fake: FakeEndpoint, judge: FakeEndpoint) -> Config:
    return Config(default_endpoint="fake", endpoints={
        "embedded": EndpointProfile(model="smollm2-135m-instruct"),
        "fake": fake_profile(fake), "judge": fake_profile(judge)})


def test_the_judge_is_called_cached_and_counted(fake: FakeEndpoint, tmp_path: Path) -> None:
    judge = FakeEndpoint()
    try:
        judge.answer = "8"
        write_task("judged", JUDGE_TOML, [{"input": "whale, mouse", "output": "whale"},
                                         {"input": "ant, horse", "output": "horse"}])
        task = load_task("judged")
        assert task.judge is not None and task.judge.endpoint == "judge"
        with pytest.raises(TaskError, match="no judge endpoint was given"):
            _score(BlackBox(fake_profile(fake)), task, "Pick.", list(task.examples))
        history = open_history(tmp_path / "h.db")
        first = _score(BlackBox(fake_profile(fake), history), task, "Pick.", list(task.examples),
                       judge=BlackBox(fake_profile(judge), history))
        assert first.per_example == [0.8, 0.8] and first.mean == pytest.approx(0.8)
        assert len(judge.requests) == 2 and judge.asking("Answer to grade: elephant") == 2
        assert first.outputs[0]["judge"]["output"] == "8" and first.outputs[0]["judge"]["verdict"] == 0.8
        # Each answer and each verdict is a paid call with its tokens (the fake reports 10 + 3 per call).
        assert first.usage.calls == 4 and first.usage.calls_saved == 0 and first.usage.tokens == 4 * 13
        again = _score(BlackBox(fake_profile(fake), history), task, "Pick.", list(task.examples),
                       judge=BlackBox(fake_profile(judge), history))
        assert len(judge.requests) == 2 and len(fake.requests) == 2, "a repeat is answered by the cache"
        assert again.per_example == first.per_example
        assert again.usage.calls == 0 and again.usage.calls_saved == 4
        fake.answer = ""
        empty = _score(BlackBox(fake_profile(fake), history), task, "Say nothing.", list(task.examples),
                       judge=BlackBox(fake_profile(judge), history))
        assert empty.per_example == [0.0, 0.0] and len(judge.requests) == 2, "an empty answer is not judged"
        history.close()
    finally:
        judge.close()


def test_a_judge_run_counts_the_judge_calls_in_its_usage(fake: FakeEndpoint, tmp_path: Path) -> None:
    judge = FakeEndpoint()
    try:
        judge.answer = "Score: 5"
        write_task("judged", JUDGE_TOML)
        engine = engine_with_fakes(fake, tmp_path)
        engine.config = _judge_config(fake, judge)

        async def go() -> Any:
            try:
                return await engine.run("judged", {"method": "manual", "n_demos": 1, "n_dev": 3, "n_test": 2},
                                        instructions=["Say it."])
            finally:
                await engine.aclose()

        summary = asyncio.run(go())
        assert summary["status"] == "finished" and summary["dev_score"] == 0.5 and summary["test_score"] == 0.5
        assert len(fake.requests) == 5 and len(judge.requests) == 5
        assert summary["calls"] == 10, "the run's calls are the answers plus the judge's verdicts"
        assert summary["evaluations"] == 1, "judging does not cost an evaluation"
    finally:
        judge.close()


def test_an_unknown_judge_endpoint_fails_when_the_run_is_created(fake: FakeEndpoint, tmp_path: Path) -> None:
    write_task("judged", JUDGE_TOML.replace('endpoint = "judge"', 'endpoint = "nowhere"'))
    engine = engine_with_fakes(fake, tmp_path)
    with pytest.raises(ConfigError, match="unknown endpoint 'nowhere'"):
        engine.create_run("judged", {"method": "manual"}, instructions=["x"])


def test_score_by_name_refuses_metrics_that_need_their_task() -> None:
    with pytest.raises(TaskError, match="needs its task"):
        score("judge", "x", ["x"])
