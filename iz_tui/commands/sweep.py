"""`iz sweep`: run a grid of runs (tasks x methods x seeds x models) on local worker processes or on Ray.

The driver runs in this process (engine.sweep.driver: it never loads the ML stack; workers do) and is the only
writer of the history, so each cell's run appears in `iz runs` and the TUI as it goes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.config import RunSettings
from engine.errors import IZError
from engine.methods import METHODS
from engine.store import open_history
from engine.sweep.report import counts, render_text, sweep_table
from iz_tui.cli import friendly_errors

err_console = Console(stderr=True)
out_console = Console()
RUN = RunSettings()


def _cell_name(cell: dict[str, Any]) -> str:
    model = f" · {cell['model']}" if cell.get("model") else ""
    return f"{cell['task']} · {cell['method']} · seed {cell['seed']}{model}"


class _Bars:
    """A bar for the sweep (cells done of all) and one per running cell (evaluations of its budget)."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
            disable=quiet and not err_console.is_terminal,
        )
        self.sweep: TaskID | None = None
        self.sweep_id: int | None = None
        self.cells: dict[int, TaskID] = {}

    def __call__(self, ev: Any) -> None:
        p = self.progress
        self.sweep_id = ev.sweep_id
        if ev.kind == "sweep_started":
            d = ev.data
            where = d.get("address", "local processes")
            err_console.print(f"sweep {ev.sweep_id}: {d['todo']} of {d['cells']} cells to run on {d['workers']} "
                              f"workers ({where})")
            self.sweep = p.add_task(f"sweep {ev.sweep_id}", total=d["cells"], completed=d["cells"] - d["todo"],
                                    info="")
            return
        cell = ev.cell
        if cell is None:
            return
        if ev.kind == "cell_started":
            if cell["id"] in self.cells:
                p.remove_task(self.cells.pop(cell["id"]))
            self.cells[cell["id"]] = p.add_task(_cell_name(cell), total=None, info=f"run {cell['run_id']} on "
                                                f"{ev.data['worker']}")
        elif ev.kind == "cell_progress" and cell["id"] in self.cells:
            e, bar = ev.data, self.cells[cell["id"]]
            if e["type"] == "run_started":
                p.update(bar, total=e["budget"])
            elif e["type"] == "candidate_scored":
                p.update(bar, completed=e["evaluations"], info=f"run {cell['run_id']} · best {e['best_dev_score']:.2f}"
                         f" · calls {e['calls']} · saved {e['calls_saved']}")
            elif e["type"] == "status":
                p.update(bar, info=f"run {cell['run_id']} · {e['message']}")
        elif ev.kind in ("cell_finished", "cell_failed", "worker_died"):
            if cell["id"] in self.cells:
                p.remove_task(self.cells.pop(cell["id"]))
            if ev.kind == "cell_finished":
                test = ev.data.get("test_score")
                p.console.print(f"[green]done[/] {_cell_name(cell)} (run {cell['run_id']}): test "
                                f"{'-' if test is None else f'{test:.2f}'}")
            elif ev.kind == "cell_failed":
                p.console.print(f"[red]failed[/] {_cell_name(cell)}: {cell['error']}")
            else:
                again = "retrying the cell on a new worker" if ev.data["retry"] else "giving up on the cell"
                p.console.print(f"[yellow]worker died[/] ({ev.data['problem']}); {again}")
            if self.sweep is not None and ev.kind != "worker_died":
                p.advance(self.sweep)


def print_table(sweep_id: int) -> None:
    h = open_history()
    cells = h.sweep_cells(sweep_id)
    rows = render_text(sweep_table(cells))
    t = Table(title=f"sweep {sweep_id}: test score, mean ±sd over seeds", box=box.SIMPLE_HEAD)
    for i, name in enumerate(rows[0]):
        t.add_column(name, justify="left" if i == 0 else "right")
    for r in rows[1:]:
        t.add_row(*r)
    out_console.print(t)
    c = counts(cells)
    out_console.print(" · ".join(f"{n} {s}" for s, n in sorted(c.items())) + " cells")
    for cell in cells:
        if cell["status"] == "failed":
            out_console.print(f"[red]failed[/] {_cell_name(cell)}: {cell['error']}")


def _list() -> None:
    rows = open_history().sweeps()
    if not rows:
        click.echo("no sweeps yet: start one with `iz sweep --tasks A,B --methods instructzero,random`")
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "status", "cells", "grid", "where", "created"):
        t.add_column(col, no_wrap=col != "grid")  # the grid wraps on a narrow terminal or a pipe
    for s in rows:
        spec = s["spec"]
        done = f"{s['cells_finished'] or 0}/{s['cells']}" + (f" ({s['cells_failed']} failed)" if s["cells_failed"]
                                                          else "")
        grid = " × ".join(f"{len(spec[k])} {k if len(spec[k]) != 1 else k[:-1]}" for k in ("tasks", "methods", "seeds"))
        t.add_row(str(s["id"]), s["status"], done, grid, f"{s['backend']} x{s['workers']}",
                  s["created_at"][5:16].replace("T", " "))
    out_console.print(t)


def _check_names(spec: Any) -> None:
    """Every task, endpoint and model the grid (an engine.sweep.spec.SweepSpec) names exists, before the sweep is
    recorded: a typo is one message and exit code, not a sweep of failed cells."""
    from engine.config import load_config
    from engine.models.embedded import checked_endpoint
    from engine.tasks import load_task

    for task in spec.tasks:
        load_task(task)
    config = load_config()
    for model in spec.models:
        checked_endpoint(config, spec.endpoint, model)


@click.command()
@click.option("--tasks", help="Comma-separated task names (see `iz tasks list`).")
@click.option("--methods", default="instructzero,random", show_default=True,
              help=f"Comma-separated methods: {', '.join(METHODS)}.")
@click.option("--seeds", default="0", show_default=True, help="Seeds: a range (0-2), a list (0,3,7) or both.")
@click.option("--models", help="Comma-separated black-box models (default: the endpoint profile's own).")
@click.option("--endpoint", help="An endpoint profile name or an OpenAI-compatible base URL.")
@click.option("--budget", type=click.IntRange(min=1), help=f"Evaluations per run. Default {RUN.evaluations}.")
@click.option("--init", "n_init", type=click.IntRange(min=1), help=f"Sobol initial points. Default {RUN.n_init}.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1),
              help=f"Candidates per BO iteration. Default {RUN.batch_size}.")
@click.option("--dev", "n_dev", type=click.IntRange(min=1), help=f"Dev examples. Default {RUN.n_dev}.")
@click.option("--test", "n_test", type=click.IntRange(min=0), help=f"Test examples. Default {RUN.n_test}.")
@click.option("--demos", "n_demos", type=click.IntRange(min=0), help=f"Demos. Default {RUN.n_demos}.")
@click.option("--instruction", "instructions", multiple=True,
              help="The instruction `manual` cells score (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Workers (each keeps its generator loaded between cells).")
@click.option("--ray", "ray_address", metavar="auto|local|ADDRESS",
              help="Run on Ray: `local` starts one for the sweep, `auto` joins this machine's cluster (or starts "
                   "one), HOST:PORT joins a cluster. Without it: local worker processes.")
@click.option("--resume", type=int, metavar="SWEEP_ID", help="Run the cells of SWEEP_ID that did not finish.")
@click.option("--list", "list_", is_flag=True, help="List sweeps and exit.")
@click.option("--show", type=int, metavar="SWEEP_ID", help="Print a sweep's method x task table and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep and its cells as one JSON object.")
@friendly_errors
def sweep(tasks: str | None, methods: str, seeds: str, models: str | None, endpoint: str | None,
          instructions: tuple[str, ...], workers: int, ray_address: str | None, resume: int | None, list_: bool,
          show: int | None, as_json: bool, **settings: Any) -> None:
    """Run every combination of tasks x methods x seeds (x models) and compare the methods.

    Each cell is one ordinary run (it shows in `iz runs` and the TUI); the table at the end is the held-out test
    score per method and task, mean ±sd over seeds. Kill it at any point and rerun with --resume SWEEP_ID: only
    unfinished cells run, and answers already paid for come from the cache.
    """
    from engine.sweep.driver import run_sweep
    from engine.sweep.spec import SweepSpec, parse_list, parse_seeds

    if list_:
        _list()
        return
    if show is not None:
        open_history().sweep(show)  # a clear error for an unknown id
        print_table(show)
        return
    if resume is None and not tasks:
        raise click.UsageError("give --tasks A,B,... (see `iz tasks list`), or --resume SWEEP_ID")
    overrides = {k: v for k, v in settings.items() if v is not None}
    if "budget" in overrides:
        overrides["budget_evaluations"] = overrides.pop("budget")
    spec = None
    if resume is None:
        spec = SweepSpec.build(
            tasks=parse_list(tasks, "tasks"), methods=parse_list(methods, "methods"), seeds=parse_seeds(seeds),
            models=parse_list(models, "models") if models else [None], endpoint=endpoint, settings=overrides,
            manual_default=list(instructions),
        )
        _check_names(spec)
        needs = [m for m in spec.methods if m in METHODS and METHODS[m].takes_instructions]
        if needs and not instructions:
            raise click.UsageError(f"the {needs[0]} method needs --instruction TEXT (repeatable)")
    bars = _Bars(quiet=as_json)
    try:
        with bars.progress:
            result = run_sweep(spec, resume=resume, workers=workers, ray=ray_address, on_event=bars)
    except KeyboardInterrupt:
        sid = bars.sweep_id if bars.sweep_id is not None else resume
        err_console.print(f"[yellow]interrupted.[/] Finished cells are kept; resume with `iz sweep --resume {sid}`")
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        print_table(result["id"])
        if result["status"] != "finished":
            err_console.print(f"some cells did not finish: rerun them with `iz sweep --resume {result['id']}`")
    if result["status"] != "finished":
        sys.exit(1)


__all__ = ["sweep", "IZError"]
