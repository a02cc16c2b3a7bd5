"""Headless CLI (click). Every command drives the same engine core the TUI uses.

Errors from the core are :class:`engine.errors.IZError`: printed as one clear message (problem + fix) on stderr
with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from engine.errors import IZError


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an IZError into its message and exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IZError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when used (or listed by --help).

    `iz` alone opens the TUI, and that path must not pay for importing every command module (rich tables, the
    export code, the engine client...): cold start to the first screen is a product feature.
    """

    lazy: dict[str, str] = {
        "config": "iz_tui.commands.config_cmd:config",
        "tasks": "iz_tui.commands.tasks:tasks",
        "run": "iz_tui.commands.runs:run",
        "runs": "iz_tui.commands.runs:runs",
        "show": "iz_tui.commands.runs:show",
        "search": "iz_tui.commands.runs:search",
        "rerank": "iz_tui.commands.runs:rerank",
        "export": "iz_tui.commands.runs:export",
        "models": "iz_tui.commands.models:models",
        "sweep": "iz_tui.commands.sweep:sweep",
    }

    #: Each lazy command's one-line help, so that `iz --help` lists them without importing their modules (which
    #: pull in pydantic, sqlite-utils and numpy: about half a second). tests/unit/test_cli_basics.py keeps these
    #: equal to the commands' own.
    lazy_help: dict[str, str] = {
        "config": "Show or create the configuration.",
        "export": "Export a run (or chosen candidates) as JSON or Markdown.",
        "models": "List, pull and remove local models (GGUF files known by name).",
        "rerank": "Re-score the top K candidates of RUN_ID (or chosen candidates) and sort them by the new score.",
        "run": "Optimise an instruction for TASK (or run a baseline) and print the best one.",
        "runs": "List runs, newest first.",
        "search": "Full-text search over every instruction ever scored (best match first).",
        "show": "Show one run and its best candidates.",
        "sweep": "Run every combination of tasks x methods x seeds (x models) and compare the methods.",
        "tasks": "List, inspect and import tasks.",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with the short help of a command not imported yet taken from :attr:`lazy_help`."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name not in self.commands and name in self.lazy_help:
                # shortened as click shortens a command's own help
                rows.append((name, click.Command(name, help=self.lazy_help[name]).get_short_help_str(limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="instructzero", prog_name="iz")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """InstructZero for the terminal: find the best instruction for a black-box LLM.

    Run `iz` alone to open the TUI.
    """
    if ctx.invoked_subcommand is None:
        from iz_tui.app import run_app

        run_app()
