"""`iz tasks list | show | import` through click's test runner, with a private IZ_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import paths
from iz_tui.cli import cli

REPO_TASKS = Path(__file__).resolve().parents[2] / "tasks"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("IZ_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_list_shows_builtin_tasks(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["tasks", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "metric", "examples", "kind", "description"]
    assert all(len(line) <= 80 for line in lines[:-1]), "readable at 80 columns"
    builtin = sorted(p.name for p in REPO_TASKS.iterdir() if (p / "task.toml").is_file())
    for name in builtin:
        assert any(line.startswith(name[:32]) and "built-in" in line for line in lines), name


def test_import_then_show_then_list(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "opposites.csv"
    f.write_text("word,opposite\nhot,cold|chilly\nup,down\nup,below\nbig,small\n")
    result = runner.invoke(cli, ["tasks", "import", str(f), "--name", "opp", "--metric", "contains",
                                 "--input-col", "word", "--output-col", "opposite", "--description", "Opposites"])
    assert result.exit_code == 0, result.output
    assert "imported task opp: 3 examples, metric contains" in result.output
    assert "repeats an earlier one" in result.output
    assert "a run needs --demos 1 or fewer" in result.output  # smaller than the default split: said at import
    assert (paths.user_tasks_dir() / "opp" / "task.toml").is_file()

    result = runner.invoke(cli, ["tasks", "show", "opp"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Opposites" in out and "metric:   contains" in out and "examples: 3" in out
    assert "Instruction: {instruction}" in out  # the default template
    assert "hot" in out and "cold | chilly" in out

    result = runner.invoke(cli, ["tasks", "list"])
    assert any(line.startswith("opp ") and "user" in line for line in result.output.splitlines())


def test_show_unknown_task(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["tasks", "show", "no_such_task"])
    assert result.exit_code == 2
    assert "no task named 'no_such_task'" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output


def test_import_error_exits_nonzero_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("question,answer\na,b\n")
    result = runner.invoke(cli, ["tasks", "import", str(f)])
    assert result.exit_code == 2
    assert 'no column "input"' in result.output and "--input-col" in result.output
    assert not paths.user_tasks_dir().exists() or not any(paths.user_tasks_dir().iterdir())


def test_import_refuses_unknown_metric_choice(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "ok.csv"
    f.write_text("input,output\na,b\n")
    result = runner.invoke(cli, ["tasks", "import", str(f), "--metric", "bleu"])
    assert result.exit_code == 2 and "exact_match" in result.output
    assert not paths.user_tasks_dir().exists()
