"""`iz config`: where the settings live, what they are, and a starting file."""

from __future__ import annotations

import contextlib
import json

import click

from engine import paths
from engine.config import default_config_text, load_config
from engine.errors import IZError
from iz_tui.cli import friendly_errors


@click.group()
def config() -> None:
    """Show or create the configuration."""


@config.command("show")
@friendly_errors
def show() -> None:
    """Print the effective settings (file + IZ_* overrides), validated."""
    cfg = load_config()
    click.echo(f"# {paths.config_file()}")
    click.echo(json.dumps(cfg.model_dump(), indent=2))


@config.command("path")
def path() -> None:
    """Print the configuration file and data folder paths."""
    click.echo(f"config:  {paths.config_file()}")
    click.echo(f"data:    {paths.home()}")
    click.echo(f"history: {paths.history_db()}")


@config.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@friendly_errors
def init(force: bool) -> None:
    """Write a commented configuration file to start from."""
    p = paths.config_file()
    if p.is_dir():
        raise IZError(f"the configuration path {p} is a folder, not a file", "point IZ_CONFIG at a file path")
    if p.exists() and not force:
        raise click.ClickException(f"{p} exists already (use --force to overwrite)")
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        # Readable by the user only (0600, folder 0700), and written whole or not at all.
        paths.private_file(tmp)
        tmp.write_text(default_config_text(), encoding="utf-8")
        tmp.replace(p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        blocker = next((q for q in p.parents if q.is_file()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise IZError(f"cannot write the configuration file {p}: {why}",
                      "check the folder exists, is writable and has space, or point IZ_CONFIG elsewhere") from None
    click.echo(f"wrote {p}")
