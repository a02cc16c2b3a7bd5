"""The `iz` command: with no sub-command it opens the TUI; sub-commands are the headless CLI."""

from __future__ import annotations

import sys

from iz_tui.cli import cli


def main() -> None:
    cli(prog_name="iz")


if __name__ == "__main__":
    sys.exit(main())
