"""`iz tasks`: list, show and import tasks.

Rich is imported inside the commands (not at module import) so `iz --help` stays fast; tables are rendered at a
fixed 80-column width when stdout is not a terminal, so piped output and tests look the same as a small terminal.
"""

from __future__ import annotations

import click

from engine.tasks.importers import DEFAULT_METRIC, IMPORT_METRICS
from iz_tui.cli import friendly_errors


def _width() -> int:
    """The terminal width, or 80 when stdout is not a terminal (pipes, tests)."""
    import shutil
    import sys

    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80


def _render(*renderables: object) -> str:
    from rich.console import Console

    console = Console(width=_width(), highlight=False, soft_wrap=False)
    with console.capture() as cap:
        for r in renderables:
            console.print(r)
    return cap.get()


def _short(text: str, limit: int) -> str:
    """One line, at most ``limit`` characters (inputs may hold newlines and whole code blocks)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@click.group()
def tasks() -> None:
    """List, inspect and import tasks."""


@tasks.command("list")
@friendly_errors
def list_cmd() -> None:
    """List built-in and user tasks."""
    from engine import paths
    from engine.tasks import list_tasks

    errors: list = []
    found = list_tasks(errors)
    if found:
        rows = [(t.name, t.metric, str(len(t.examples)), "built-in" if t.builtin else "user", t.description)
                for t in found]
        header = ("name", "metric", "examples", "kind", "description")
        widths = [min(max(len(r[i]) for r in [header, *rows]), 32) for i in range(4)]
        # The description takes what is left of the line (at least 20 columns).
        desc_width = max(20, _width() - sum(widths) - 2 * 4)
        for i, row in enumerate([header, *rows]):
            cells = [_short(row[0], widths[0]).ljust(widths[0]), row[1].ljust(widths[1]),
                     row[2].rjust(widths[2]), row[3].ljust(widths[3]), _short(row[4], desc_width)]
            line = "  ".join(cells).rstrip()
            click.echo(click.style(line, bold=True) if i == 0 else line)
    else:
        click.echo("no tasks found")
    click.echo(f"user tasks: {paths.user_tasks_dir()}  (add one with `iz tasks import FILE`)")
    for exc in errors:
        click.echo(f"warning: skipped a task: {exc}", err=True)


@tasks.command("show")
@click.argument("name")
@click.option("-n", "--examples", "n_examples", type=click.IntRange(min=0), default=5, show_default=True, help="How many examples to print.")
@friendly_errors
def show_cmd(name: str, n_examples: int) -> None:
    """Show a task: description, metric, template, size and a few examples."""
    from rich.table import Table
    from rich.text import Text

    from engine.tasks import load_task
    from engine.tasks.model import PREVIEW_INSTRUCTION

    task = load_task(name)
    click.echo(f"{task.name}  ({'built-in' if task.builtin else 'user'} task, {task.source})")
    if task.description:
        click.echo(f"  {task.description}")
    click.echo(f"metric:   {task.metric}")
    click.echo(f"examples: {len(task.examples)}")
    multi = sum(len(ex.answers) > 1 for ex in task.examples)
    if multi:
        click.echo(f"          {multi} with several right answers")
    if task.demos:
        click.echo(f"demos:    {len(task.demos)} (shown to the generator only; dev and test come from the examples)")
    label = "template:" if task.template else "template: (default)"
    click.echo(label)
    for line in task.eval_template.splitlines() or [""]:
        click.echo(f"  | {line}")
    for line in task.settings_lines():
        click.echo(f"set:      {line}")
    api, where = _preview_api(task)
    click.echo(f"prompt for example 1 ({api}, {where}):")
    prompt = task.render(PREVIEW_INSTRUCTION, task.examples[0], api)
    for line in prompt.text().splitlines() or [""]:
        click.echo(f"  | {line}")
    for note in task.notes:
        click.echo(f"note: {note}")
    if n_examples > 0:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("input", ratio=1, overflow="fold")
        table.add_column("answers", ratio=1, overflow="fold")
        for i, ex in enumerate(task.examples[:n_examples], 1):
            answers = " | ".join(_short(a, 60) for a in ex.answers[:4])
            if len(ex.answers) > 4:
                answers += f" (+{len(ex.answers) - 4} more)"
            table.add_row(str(i), Text(_short(ex.input, 120)), Text(answers))  # data, never markup
        click.echo(_render(table), nl=False)


def _preview_api(task: object) -> tuple[str, str]:
    """The api a run of ``task`` would use on the default endpoint, and where that comes from (in words)."""
    api = getattr(task, "api", None)
    if api:
        return api, "set by the task"
    from engine.config import load_config
    from engine.errors import IZError

    try:
        cfg = load_config()
        name, profile = cfg.endpoint()
    except IZError:  # a broken configuration is reported by `iz config show`; the preview still helps
        return "chat", "the configuration cannot be read: assuming chat"
    return profile.api, f"endpoint {name}; another endpoint may differ"


@tasks.command("import")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option("--induce", type=click.Path(dir_okay=False),
              help="Instruction induction: the induce file (demos); use with --execute instead of PATH.")
@click.option("--execute", type=click.Path(dir_okay=False),
              help="Instruction induction: the execute file of the same task (dev and test examples).")
@click.option("--pooled", is_flag=True,
              help="With --induce/--execute: one pool of examples instead of demos from induce only.")
@click.option("--name", help="Task name (default: the file name without extension).")
@click.option("--metric", type=click.Choice(list(IMPORT_METRICS)),
              help=f"Scoring metric (default: the paper's for an instruction-induction task, else {DEFAULT_METRIC}; "
                   "python and judge are set in the task.toml).")
@click.option("--input-col", help="Column / key holding the input (default: input).")
@click.option("--output-col", help="Column / key holding the answer(s) (default: output).")
@click.option("--answer-sep", default="|", show_default=True,
              help="CSV only: separator between several right answers in one cell ('' for none).")
@click.option("--description", help="One line saying what the task is.")
@friendly_errors
def import_cmd(path: str | None, induce: str | None, execute: str | None, pooled: bool, name: str | None,
               metric: str | None, input_col: str | None, output_col: str | None, answer_sep: str,
               description: str | None) -> None:
    """Import a task from a .json (instruction-induction), .jsonl or .csv file, or merge an instruction-induction
    pair with --induce FILE --execute FILE.

    The task is written to the user tasks folder only after the whole file validated; on any error nothing is
    written. The pair becomes one task as in the paper: demos from induce, dev and test from execute.
    """
    from engine.tasks import import_induce_execute, import_task

    if (induce is None) != (execute is None):
        raise click.UsageError("--induce and --execute go together (the two files of one task)")
    if induce is not None and path is not None:
        raise click.UsageError("give either PATH or --induce/--execute, not both")
    if path is None and induce is None:
        raise click.UsageError("give the file to import (PATH), or --induce FILE --execute FILE")
    if pooled and induce is None:
        raise click.UsageError("--pooled only applies to --induce/--execute")
    common = {"name": name, "metric": metric, "description": description, "input_col": input_col,
              "output_col": output_col, "answer_sep": answer_sep}
    if induce is not None and execute is not None:
        task = import_induce_execute(induce, execute, pooled=pooled, **common)
    else:
        task = import_task(path, **common)  # type: ignore[arg-type]
    demos = f" + {len(task.demos)} demos" if task.demos else ""
    click.echo(f"imported task {task.name}: {len(task.examples)} examples{demos}, metric {task.metric}")
    click.echo(f"  into {task.source}")
    for note in task.notes:
        click.echo(f"note: {note}")
    click.echo(f"see it with `iz tasks show {task.name}`")
