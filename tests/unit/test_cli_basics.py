"""`iz --version` and shell completion, through the installed `iz` entry point as a shell would call it."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.provenance import package_version

IZ = [sys.executable, "-m", "iz_tui"]


def _iz(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IZ, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_version_names_the_package_version() -> None:
    out = _iz("--version")
    assert out.returncode == 0 and out.stdout.strip().endswith(package_version())


def test_bash_completion_script_and_answers() -> None:
    script = _iz(_IZ_COMPLETE="bash_source")
    assert script.returncode == 0 and "complete -o nosort -F _iz_completion iz" in script.stdout
    commands = _iz(COMP_WORDS="iz ru", COMP_CWORD="1", _IZ_COMPLETE="bash_complete")
    assert commands.stdout.split() == ["plain,run", "plain,runs"], "lazy commands complete too"
    tasks = _iz(COMP_WORDS="iz run la", COMP_CWORD="2", _IZ_COMPLETE="bash_complete")
    assert tasks.stdout.split() == ["plain,larger_animal", "plain,last_letter"], "task names complete"
    options = _iz(COMP_WORDS="iz run --lik", COMP_CWORD="2", _IZ_COMPLETE="bash_complete")
    assert options.stdout.split() == ["plain,--like"]


def test_help_lists_every_command_without_importing_them() -> None:
    """`iz --help` takes each command's one line from ``LazyGroup.lazy_help`` instead of importing its module:
    the listing must be what click prints with every command imported, and no command module may be loaded."""
    probe = (
        "import sys, click\n"
        "from iz_tui.cli import cli\n"
        "lazy = cli.get_help(click.Context(cli, info_name='iz'))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('iz_tui.commands.', 'engine.config', 'engine.store')))\n"
        "ctx = click.Context(cli, info_name='iz')\n"
        "for name in cli.list_commands(ctx): cli.get_command(ctx, name)\n"
        "cli.lazy_help = {}\n"
        "full = cli.get_help(click.Context(cli, info_name='iz'))\n"
        "print(repr((lazy == full, loaded)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(True, [])"
