"""Loading and validating task folders, and drawing splits.

Every bad folder must give a TaskError naming the file (and the line where one applies) with a fix, and reading
must never write: the user tasks folder is compared before and after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import paths
from engine.errors import TaskError
from engine.tasks import DEFAULT_TEMPLATE, Example, Task, list_tasks, load_task, make_splits

REPO_TASKS = Path(__file__).resolve().parents[2] / "tasks"
BUILTIN_FOLDERS = sorted(p.name for p in REPO_TASKS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))) \
    if REPO_TASKS.is_dir() else []


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IZ_HOME with an empty built-in folder (so the tests do not depend on the shipped tasks)."""
    monkeypatch.setenv("IZ_HOME", str(tmp_path / "home"))
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    monkeypatch.setattr(paths, "builtin_tasks_dir", lambda: builtin)
    paths.user_tasks_dir().mkdir(parents=True)
    return tmp_path


def write_task(root: Path, folder: str, toml: str | bytes | None = None, data: str | bytes | None = None) -> Path:
    d = root / folder
    d.mkdir(parents=True)
    if toml is None:
        toml = f'name = "{folder}"\ndescription = "a test task"\nmetric = "exact_match"\n'
    if data is None:
        data = "".join(json.dumps({"input": f"in{i}", "output": f"out{i}"}) + "\n" for i in range(10))
    (d / "task.toml").write_bytes(toml.encode() if isinstance(toml, str) else toml)
    (d / "data.jsonl").write_bytes(data.encode() if isinstance(data, str) else data)
    return d


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def expect_error(name: str, *fragments: str) -> TaskError:
    """load_task(name) fails with every fragment in the message, a fix, and nothing written."""
    user = paths.user_tasks_dir()
    before = snapshot(user)
    with pytest.raises(TaskError) as info:
        load_task(name)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert info.value.fix, "every TaskError carries a fix"
    assert snapshot(user) == before
    return info.value


# --- a good task ----------------------------------------------------------------------------------------------


def test_loads_a_good_user_task(home: Path) -> None:
    data = (json.dumps({"input": "hot", "output": "cold"}) + "\n\n"
            + json.dumps({"input": "up", "output": ["down", "below"]}) + "\n")
    write_task(paths.user_tasks_dir(), "opposites", data=data)
    task = load_task("opposites")
    assert task.name == "opposites" and task.metric == "exact_match" and not task.builtin
    assert task.examples == (Example("hot", ("cold",)), Example("up", ("down", "below")))
    assert task.examples[1].output == "down"
    assert task.template is None and task.eval_template == DEFAULT_TEMPLATE
    assert task.prompt("Give the opposite.", task.examples[0]) == DEFAULT_TEMPLATE.replace(
        "{instruction}", "Give the opposite.").replace("{input}", "hot")


def test_template_substitution_is_single_pass(home: Path) -> None:
    toml = 'name = "t"\nmetric = "contains"\ntemplate = "Q: {input} {\\"json\\": 1}\\nDo: {instruction}"\n'
    write_task(paths.user_tasks_dir(), "t", toml=toml, data='{"input": "say {instruction}", "output": "x"}\n')
    task = load_task("t")
    assert task.prompt("use {input}", task.examples[0]) == 'Q: say {instruction} {"json": 1}\nDo: use {input}'


def test_load_by_path_and_listing(home: Path) -> None:
    write_task(home / "builtin", "alpha")
    write_task(paths.user_tasks_dir(), "beta")
    write_task(paths.user_tasks_dir(), "_draft", toml="not toml [")   # skipped: starts with "_"
    write_task(paths.user_tasks_dir(), ".hidden", toml="not toml [")  # skipped: starts with "."
    tasks = list_tasks()
    assert [(t.name, t.builtin) for t in tasks] == [("alpha", True), ("beta", False)]
    assert load_task("alpha").builtin
    by_path = load_task(str(paths.user_tasks_dir() / "beta"))
    assert by_path.name == "beta" and by_path.source == paths.user_tasks_dir() / "beta"


def test_list_tasks_can_collect_errors(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "good")
    write_task(paths.user_tasks_dir(), "bad", toml='name = "bad"\nmetric = "bleu"\n')
    with pytest.raises(TaskError, match="bleu"):
        list_tasks()
    errors: list[TaskError] = []
    assert [t.name for t in list_tasks(errors)] == ["good"]
    assert len(errors) == 1 and "bleu" in str(errors[0])


def test_missing_user_dir_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZ_HOME", str(tmp_path / "nowhere"))
    found = list_tasks()
    assert len(found) == len(BUILTIN_FOLDERS) and all(t.builtin for t in found)
    assert not (tmp_path / "nowhere").exists()


# --- each bad input -------------------------------------------------------------------------------------------


def test_bad_toml(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\nmetric = exact_match\n')
    expect_error("t", "task.toml", "invalid TOML", str(paths.user_tasks_dir() / "t"))


def test_unknown_metric_lists_valid_ones(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\nmetric = "bleu"\n')
    expect_error("t", "task.toml", "'bleu'", "exact_match, contains, f1, exact_set")


def test_metric_of_the_wrong_type(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\nmetric = ["f1"]\n')
    expect_error("t", "task.toml", "unknown metric", "exact_match, contains")


def test_missing_metric(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\n')
    expect_error("t", "task.toml", "no metric")


def test_unknown_key(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\nmetric = "f1"\nmetirc = "f1"\n')
    expect_error("t", "task.toml", "metirc")


def test_template_without_placeholders(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml='name = "t"\nmetric = "f1"\ntemplate = "Do {instruction}"\n')
    expect_error("t", "task.toml", "{input}")
    write_task(paths.user_tasks_dir(), "u", toml='name = "u"\nmetric = "f1"\ntemplate = "Q: {input}"\n')
    expect_error("u", "task.toml", "{instruction}")


def test_missing_input(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data='{"input": "a", "output": "b"}\n{"output": "b"}\n')
    expect_error("t", "data.jsonl, line 2", 'missing "input"')


def test_missing_output(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data='{"input": "a", "output": "b"}\n\n{"input": "c"}\n')
    expect_error("t", "data.jsonl, line 3", 'missing "output"')


def test_empty_answer_list(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data='{"input": "a", "output": []}\n')
    expect_error("t", "data.jsonl, line 1", "empty list")


def test_blank_answer_and_blank_input(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data='{"input": "a", "output": ["b", " "]}\n')
    expect_error("t", "data.jsonl, line 1", "non-empty string")
    write_task(paths.user_tasks_dir(), "u", data='{"input": "", "output": "b"}\n')
    expect_error("u", "data.jsonl, line 1", '"input"')


def test_invalid_json_line(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data='{"input": "a", "output": "b"}\n{"input": "a", \n')
    expect_error("t", "data.jsonl, line 2", "invalid JSON")


def test_empty_data(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", data="\n  \n")
    expect_error("t", "data.jsonl", "no examples")


def test_missing_data_file(home: Path) -> None:
    d = write_task(paths.user_tasks_dir(), "t")
    (d / "data.jsonl").unlink()
    expect_error("t", "no data.jsonl")


def test_not_utf8_data(home: Path) -> None:
    data = b'{"input": "a", "output": "b"}\n{"input": "caf\xe9", "output": "b"}\n'
    write_task(paths.user_tasks_dir(), "t", data=data)
    expect_error("t", "data.jsonl, line 2", "not UTF-8")


def test_not_utf8_toml(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "t", toml=b'name = "t"\nmetric = "f1"\ndescription = "caf\xe9"\n')
    expect_error("t", "task.toml, line 3", "not UTF-8")


def test_duplicate_name_builtin_and_user(home: Path) -> None:
    write_task(home / "builtin", "same")
    write_task(paths.user_tasks_dir(), "same")
    err = expect_error("same", "declared more than once", "built-in", "user",
                       str(home / "builtin" / "same" / "task.toml"))
    assert "rename" in (err.fix or "")
    with pytest.raises(TaskError, match="more than once"):
        list_tasks()


def test_duplicate_name_two_user_folders(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "one", toml='name = "dup"\nmetric = "f1"\n')
    write_task(paths.user_tasks_dir(), "two", toml='name = "dup"\nmetric = "f1"\n')
    expect_error("dup", "declared more than once", "one", "two")
    errors: list[TaskError] = []
    assert list_tasks(errors) == [] and len(errors) == 1  # reported once, not once per folder


def test_unknown_task_name(home: Path) -> None:
    write_task(paths.user_tasks_dir(), "known")
    expect_error("unknown", "no task named 'unknown'", "known")


def test_bad_path(home: Path) -> None:
    expect_error(str(home / "no" / "such"), "no task folder")


# --- splits ---------------------------------------------------------------------------------------------------


def _task(n: int) -> Task:
    return Task(name="toy", description="", metric="exact_match", template=None,
                examples=tuple(Example(f"in{i}", (f"out{i}",)) for i in range(n)), source=Path("."), builtin=False)


def test_splits_are_deterministic_and_disjoint() -> None:
    task = _task(200)
    a = make_splits(task, n_demos=5, n_dev=20, n_test=100, seed=7)
    b = make_splits(task, n_demos=5, n_dev=20, n_test=100, seed=7)
    c = make_splits(task, n_demos=5, n_dev=20, n_test=100, seed=8)
    assert (a.demos, a.dev, a.test) == (b.demos, b.dev, b.test)
    assert (a.demos, a.dev, a.test) != (c.demos, c.dev, c.test)
    assert (len(a.demos), len(a.dev), len(a.test)) == (5, 20, 100)
    inputs = [e.input for e in a.demos + a.dev + a.test]
    assert len(set(inputs)) == len(inputs) == 125
    assert a.notes == []


def test_splits_shrink_test_first_then_dev() -> None:
    s = make_splits(_task(60), n_demos=5, n_dev=20, n_test=100, seed=0)
    assert (len(s.demos), len(s.dev), len(s.test)) == (5, 20, 35)
    assert s.notes == ["task toy has 60 examples: test uses 35 instead of 100"]
    s = make_splits(_task(15), n_demos=5, n_dev=20, n_test=100, seed=0)
    assert (len(s.demos), len(s.dev), len(s.test)) == (5, 10, 0)
    assert any("test uses 0 instead of 100" in n for n in s.notes)
    assert any("dev uses 10 instead of 20" in n for n in s.notes)
    s = make_splits(_task(6), n_demos=5, n_dev=20, n_test=100, seed=0)
    assert (len(s.demos), len(s.dev), len(s.test)) == (5, 1, 0)


def test_splits_too_few_examples() -> None:
    with pytest.raises(TaskError) as info:
        make_splits(_task(5), n_demos=5, n_dev=20, n_test=100, seed=0)
    msg = str(info.value)
    assert "5 example(s)" in msg and "5 demos" in msg and "20 dev" in msg and "100 test" in msg
    assert "fewer demos" in (info.value.fix or "")


def test_splits_reject_bad_sizes() -> None:
    with pytest.raises(TaskError, match="dev size"):
        make_splits(_task(50), n_demos=5, n_dev=0, n_test=10, seed=0)


# --- the shipped tasks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", BUILTIN_FOLDERS)
def test_builtin_task_loads(folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZ_HOME", str(tmp_path))
    task = load_task(str(REPO_TASKS / folder))
    assert task.builtin
    assert task.description, "built-in tasks describe themselves"
    assert len(task.examples) >= 20
    assert all(ex.input.strip() and all(a.strip() for a in ex.answers) for ex in task.examples)
    assert load_task(task.name).examples == task.examples  # found by its name too (and the name is unique)
    s = make_splits(task, n_demos=5, n_dev=10, n_test=5, seed=0)
    assert len(s.demos) == 5 and len(s.dev) == 10
