"""Every command that takes a run, candidate, sweep, task, model, method or endpoint name refuses one that does not
exist: one clear message (what is missing and how to find the right one), a non-zero exit, no traceback.

The cases are checked against the CLI's own command list: a parameter of that kind on any command (a new command
included) without a case here fails :func:`test_every_id_parameter_has_a_case`, so no command can skip the check.
Real parts: the `iz` command in a subprocess, on a fresh IZ_HOME.
"""

from __future__ import annotations

import os
import subprocess

import click
import pytest
from reliability_helpers import IZ

from iz_tui.cli import cli

pytestmark = pytest.mark.timeout(300)

#: Parameter names that name something that must exist.
ID_PARAMS = {"run_id", "candidate_ids", "resume", "like", "show", "task", "tasks", "name", "names", "endpoint",
             "model", "models", "method", "methods"}
#: (command, parameter) that name something new, not something to look up.
CREATES = {("tasks import", "name")}
MISSING = "999999"

#: (command, parameter) -> the arguments that name a missing one, and a word the message must hold.
CASES: dict[tuple[str, str], tuple[list[str], str]] = {
    ("export", "run_id"): (["export", MISSING], "no run"),
    ("export", "candidate_ids"): (["export", "--candidate", MISSING], "no candidate"),
    ("models path", "name"): (["models", "path", "nosuch"], "unknown model"),
    ("models pull", "names"): (["models", "pull", "nosuch"], "unknown model"),
    ("models remove", "name"): (["models", "remove", "nosuch", "--yes"], "unknown model"),
    ("models verify", "name"): (["models", "verify", "nosuch"], "unknown model"),
    ("rerank", "run_id"): (["rerank", MISSING, "--top", "3"], "no run"),
    ("rerank", "candidate_ids"): (["rerank", "--candidate", MISSING], "no candidate"),
    ("rerank", "endpoint"): (["rerank", MISSING, "--endpoint", "nosuch"], "unknown endpoint"),
    ("rerank", "model"): (["rerank", MISSING, "--model", "nosuch"], "nosuch"),
    ("run", "task"): (["run", "nosuch", "--dry-run"], "no task"),
    ("run", "method"): (["run", "antonyms", "--method", "nosuch", "--dry-run"], "nosuch"),
    ("run", "endpoint"): (["run", "antonyms", "--endpoint", "nosuch", "--dry-run"], "unknown endpoint"),
    ("run", "model"): (["run", "antonyms", "--model", "nosuch", "--dry-run"], "nosuch"),
    ("run", "resume"): (["run", "--resume", MISSING], "no run"),
    ("run", "like"): (["run", "--like", MISSING], "no run"),
    ("runs", "task"): (["runs", "--task", "nosuch"], "no task"),
    ("runs", "method"): (["runs", "--method", "nosuch"], "unknown method"),
    ("search", "task"): (["search", "x", "--task", "nosuch"], "no task"),
    ("search", "run_id"): (["search", "x", "--run", MISSING], "no run"),
    ("show", "run_id"): (["show", MISSING], "no run"),
    ("sweep", "tasks"): (["sweep", "--tasks", "nosuch", "--methods", "random", "--seeds", "0"], "no task"),
    ("sweep", "methods"): (["sweep", "--tasks", "antonyms", "--methods", "nosuch", "--seeds", "0"], "nosuch"),
    ("sweep", "models"): (["sweep", "--tasks", "antonyms", "--methods", "random", "--seeds", "0", "--models",
                           "nosuch"], "nosuch"),
    ("sweep", "endpoint"): (["sweep", "--tasks", "antonyms", "--methods", "random", "--seeds", "0", "--endpoint",
                             "nosuch"], "unknown endpoint"),
    ("sweep", "resume"): (["sweep", "--resume", MISSING], "no sweep"),
    ("sweep", "show"): (["sweep", "--show", MISSING], "no sweep"),
    ("tasks show", "name"): (["tasks", "show", "nosuch"], "no task"),
}


def _commands() -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: list[str], ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name], click.Context(sub, parent=ctx))
        else:
            out[" ".join(path)] = cmd

    walk(cli, [], click.Context(cli))
    return out


def test_every_id_parameter_has_a_case() -> None:
    wanted = {(name, p.name) for name, cmd in _commands().items() for p in cmd.params
              if p.name in ID_PARAMS and (name, p.name) not in CREATES}
    assert wanted - set(CASES) == set(), "add a case for each: what does the command say when it is missing?"
    assert set(CASES) - wanted == set(), "a case for a parameter that no longer exists"


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda c: f"{c[0]}:{c[1]}")
def test_a_missing_one_is_one_clear_message_and_a_non_zero_exit(case: tuple[str, str]) -> None:
    args, word = CASES[case]
    out = subprocess.run([*IZ, *args], capture_output=True, text=True, timeout=240, env=dict(os.environ),
                         stdin=subprocess.DEVNULL)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "Traceback" not in text, text
    assert word in text, text
    assert text.lower().count("error") >= 1 and text.count("error:") <= 1, text
