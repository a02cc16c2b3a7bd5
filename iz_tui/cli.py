"""Headless CLI (click). Every command drives the same engine core the TUI uses.

Errors from the core are :class:`engine.errors.IZError`: printed as one clear message (problem + fix) on stderr
with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
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


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="instructzero", prog_name="iz")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """InstructZero for the terminal: find the best instruction for a black-box LLM.

    Run `iz` alone to open the TUI.
    """
    if ctx.invoked_subcommand is None:
        from iz_tui.app import run_app

        run_app()


def _register() -> None:
    from iz_tui.commands import config_cmd

    cli.add_command(config_cmd.config)
    for mod_name, names in (("tasks", ["tasks"]), ("runs", ["run", "runs", "show", "rerank", "export", "search"])):
        try:
            mod = __import__(f"iz_tui.commands.{mod_name}", fromlist=names)
        except ModuleNotFoundError:
            continue
        for n in names:
            if hasattr(mod, n):
                cli.add_command(getattr(mod, n))


_register()
