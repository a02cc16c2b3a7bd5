"""`iz config`: where the settings live, what they are, and a starting file."""

from __future__ import annotations

import json

import click

from engine import paths
from engine.config import default_config_text, load_config
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
def init(force: bool) -> None:
    """Write a commented configuration file to start from."""
    p = paths.config_file()
    if p.exists() and not force:
        raise click.ClickException(f"{p} exists already (use --force to overwrite)")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(default_config_text(), encoding="utf-8")
    click.echo(f"wrote {p}")
