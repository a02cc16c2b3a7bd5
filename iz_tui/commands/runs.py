"""`iz run`, `iz runs`, `iz show`, `iz rerank`, `iz export`, `iz search`: the headless CLI over the engine.

`iz run` drives the same engine process the TUI uses (through :class:`engine.wire.client.EngineClient`), so a run
started here is the same run, in the same history, as one started from the TUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.config import RunSettings
from engine.errors import IZError
from engine.export import export_data, made_with, to_json, to_markdown
from engine.methods import METHODS
from engine.methods import get as get_method
from engine.models.embedded import checked_endpoint
from engine.store import History, open_history
from engine.usage import Usage
from engine.wire.client import EngineClient
from engine.wire.events import (
    CandidateScored,
    Event,
    RerankProgress,
    RunFailed,
    RunStarted,
    Status,
)
from iz_tui.cli import friendly_errors
from iz_tui.run_events import route

err_console = Console(stderr=True)
out_console = Console()
#: The run settings out of the box, for the help text (a run starts from the configured [run] settings).
RUN_DEFAULTS = RunSettings()


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """Fixed-width columns sized to their content; the last column takes what is left of the terminal and is
    cut with an ellipsis, so a listing stays one line per row at 80 columns."""
    width = shutil.get_terminal_size((80, 24)).columns
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    last = max(16, width - sum(widths) - 2 * len(widths) - 1)

    def line(cells: list[str]) -> str:
        tail = cells[-1] if len(cells[-1]) <= last else cells[-1][: last - 1] + "…"
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)) + "  " + tail

    return "\n".join([line(headers)] + [line(r) for r in rows])


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _write_whole(path: Path, text: str) -> None:
    """Write a file whole or not at all (a temporary file beside it, renamed over it), with one clear error when
    the folder is missing, read-only or full. Not a regular file (a pipe, /dev/stdout): written directly."""
    tmp: Path | None = None
    try:
        if path.exists() and not path.is_file():
            with path.open("w", encoding="utf-8") as f:
                f.write(text)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        tmp = None
    except OSError as exc:
        raise IZError(f"cannot write {path}: {exc.strerror or exc}",
                      "check the folder exists, is writable and has space, or pick another -o path") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def complete_task(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Task names for shell completion (`iz run <TAB>`); a broken task folder is skipped, never an error."""
    from engine.tasks import list_tasks

    return [t.name for t in list_tasks(errors=[]) if t.name.startswith(incomplete)]


@click.command()
@click.argument("task", required=False, shell_complete=complete_task)
@click.option("--method", type=click.Choice(METHODS), default=None,
              help=f"{RUN_DEFAULTS.method} (default), or a baseline on the same budget.")
@click.option("--budget", type=click.IntRange(min=1),
              help=f"Evaluations (instructions scored). Default {RUN_DEFAULTS.evaluations}.")
@click.option("--init", "n_init", type=click.IntRange(min=1),
              help=f"Sobol initial points. Default {RUN_DEFAULTS.n_init}.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1),
              help=f"Candidates per BO iteration. Default {RUN_DEFAULTS.batch_size}.")
@click.option("--dev", "n_dev", type=click.IntRange(min=1),
              help=f"Dev examples per evaluation. Default {RUN_DEFAULTS.n_dev}.")
@click.option("--test", "n_test", type=click.IntRange(min=0),
              help=f"Held-out test examples. Default {RUN_DEFAULTS.n_test}.")
@click.option("--demos", "n_demos", type=click.IntRange(min=0),
              help=f"Demos in the generator prompt. Default {RUN_DEFAULTS.n_demos}.")
@click.option("--resample", "resample_repeats", type=click.IntRange(min=0, max=8),
              help="Sampled second tries for a soft prompt that writes an instruction the run has "
                   f"(0 = greedy only, as in the paper). Default {RUN_DEFAULTS.resample_repeats}.")
@click.option("--resample-echoes/--keep-echoes", "resample_echoes", default=None,
              help="Also sample again a soft prompt whose instruction only restates the generator's prompt "
                   f"(default {'on' if RUN_DEFAULTS.resample_echoes else 'off'}).")
@click.option("--prompt-style", "prompt_style", type=click.Choice(["auto", "paper", "direct", "plain"]),
              help="How the generator (and APE's proposer) is asked: the paper's 'I gave a friend ...', or 'direct' "
                   "(asks for one instruction that names the task; chat models). Default auto: the generator "
                   "model's measured style.")
@click.option("--race/--no-race", "race", default=None,
              help="Stop scoring a candidate once it cannot beat the run's best (saves calls; default on).")
@click.option("--max-calls", "budget_calls", type=click.IntRange(min=1), help="Stop after this many paid calls.")
@click.option("--max-tokens", "budget_tokens", type=click.IntRange(min=1), help="Stop after this many tokens.")
@click.option("--max-cost", "budget_cost", type=click.FloatRange(min=0, min_open=True), metavar="USD",
              help="Stop once the run has spent this many USD (needs price_input/price_output in the profile).")
@click.option("--no-code", "allow_code", flag_value=False, default=None,
              help="Refuse a task that runs its own code (metric = \"python\"); such a run says so either way.")
@click.option("--endpoint", help="An endpoint profile name or an OpenAI-compatible base URL.")
@click.option("--model", help="The black-box model name (overrides the profile's).")
@click.option("--seed", type=int, help=f"Seed for splits, projection and BO. Default {RUN_DEFAULTS.seed}.")
@click.option("--instruction", "instructions", multiple=True, help="An instruction to score (manual; repeatable).")
@click.option("--resume", "resume", type=int, metavar="RUN_ID", help="Continue an interrupted run.")
@click.option("--like", "like", type=int, metavar="RUN_ID",
              help="Start a new run with the settings, seed, endpoint and model of RUN_ID (options given win).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--dry-run", is_flag=True,
              help="Print the estimated calls, tokens and money, and exit (no run is created, no engine started).")
@friendly_errors
def run(task: str | None, method: str | None, resume: int | None, like: int | None, as_json: bool,
        endpoint: str | None, model: str | None, instructions: tuple[str, ...], dry_run: bool,
        **settings: Any) -> None:
    """Optimise an instruction for TASK (or run a baseline) and print the best one.

    Settings left out come from the [run] section of the configuration (`iz config show`); the defaults below
    are its values out of the box.
    """
    if resume is None and like is None and not task:
        raise click.UsageError("give a TASK (see `iz tasks list`), --resume RUN_ID or --like RUN_ID")
    if resume is not None and like is not None:
        raise click.UsageError("--resume continues a run, --like starts a new one: give one of them")
    overrides = {k: v for k, v in settings.items() if v is not None}
    if overrides.pop("budget", None) is not None:
        overrides["budget_evaluations"] = settings["budget"]
    if method:
        overrides["method"] = method
    if instructions and not method:
        overrides["method"] = "manual"
    if like is not None:
        task, request = _like(like, task, overrides)
        overrides = request["settings"]
        endpoint = endpoint or request["endpoint"]
        model = model or (None if endpoint != request["endpoint"] else request["model"])
        instructions = instructions or tuple(request["instructions"])
    if dry_run:
        if resume is not None:
            raise click.UsageError("--dry-run estimates a new run; a resumed run pays only for what is missing")
        _dry_run(task or "", overrides, endpoint, model, list(instructions), as_json)
        return
    summary = asyncio.run(_run(task, overrides, endpoint, model, list(instructions), resume, as_json))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary.get("status") == "failed":
        sys.exit(1)


def _dry_run(task: str, overrides: dict[str, Any], endpoint: str | None, model: str | None,
             instructions: list[str], as_json: bool) -> None:
    """What the run would spend (engine.cost), worked out here: nothing is recorded, no engine is started."""
    from engine.config import load_config
    from engine.cost import estimate_run
    from engine.tasks import load_task

    config = load_config()
    settings = config.run.with_overrides(overrides)
    name, profile = checked_endpoint(config, endpoint, model)  # a missing model fails here, as the run would
    method = get_method(settings.method)
    method.validate(settings, instructions)
    est = estimate_run(load_task(task), settings, profile, n_instructions=len(instructions))
    if as_json:
        click.echo(json.dumps({"task": task, "method": settings.method, "endpoint": name, "model": profile.model,
                               "prices": profile.prices, **est.as_dict()}))
        return
    evaluations = method.budget(settings, len(instructions))
    prices = profile.prices
    money = est.money_text()
    if prices is not None and not est.local:
        money += f"  (at ${prices[0]:g} in / ${prices[1]:g} out per million tokens)"
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("dry run", f"{task} · {settings.method} · {evaluations} evaluations · endpoint {name} "
              f"({profile.model}); nothing started")
    t.add_row("black-box calls", f"≤ {est.calls:,}")
    t.add_row("tokens", f"~{est.tokens:,} ({est.prompt_tokens:,} prompt + {est.completion_tokens:,} completion)")
    t.add_row("money", money)
    if est.capped_by:
        t.add_row("", f"cut short by the {est.capped_by} budget")
    t.add_row("", "[dim]an estimate before cache hits and repeats, which cost nothing[/]")
    out_console.print(t)


def _like(run_id: int, task: str | None, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The task and start parameters that repeat run ``run_id``; says so when the generator changed since."""
    from engine.config import load_config, revive
    from engine.provenance import generator_identity

    row = open_history().run(run_id)
    request = revive(row).like(overrides)
    before = (row.get("provenance") or {}).get("generator")
    if before and get_method(request["settings"]["method"]).needs_generator:
        now = generator_identity(load_config())
        if (now.get("sha256"), now.get("knobs")) != (before.get("sha256"), before.get("knobs")):
            err_console.print(f"[yellow]note:[/] run {run_id} was written by the generator {before.get('name')} "
                              f"({(before.get('sha256') or '?')[:12]}); this one is {now.get('name')} "
                              f"({(now.get('sha256') or '?')[:12]}), so the candidates may differ")
    return task or row["task"], request


async def _run(task: str | None, overrides: dict[str, Any], endpoint: str | None, model: str | None,
               instructions: list[str], resume: int | None, quiet: bool) -> dict[str, Any]:
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=err_console, transient=False, disable=not err_console.is_terminal and quiet,
    )
    bar = progress.add_task("starting", total=None, info="")
    client = EngineClient()
    await client.start()
    loop = asyncio.get_running_loop()
    run_id: int | None = None
    cancelled = False

    def on_sigint() -> None:
        nonlocal cancelled
        if run_id is not None and not cancelled:
            cancelled = True
            err_console.print("[yellow]cancelling… (the run keeps what it scored; resume it later)")
            asyncio.ensure_future(client.cancel_run(run_id))

    loop.add_signal_handler(signal.SIGINT, on_sigint)

    class Shown:
        """The events the progress bar shows (the table from event to handler: iz_tui/run_events.py)."""

        @staticmethod
        def on_run_started(ev: RunStarted) -> None:
            progress.update(bar, total=ev.budget, description=f"{ev.task} · {ev.method}")
            for note in ev.notes:
                err_console.print(f"[yellow]note:[/] {note}")

        @staticmethod
        def on_status(ev: Status) -> None:
            progress.update(bar, info=ev.message)

        @staticmethod
        def on_candidate_scored(ev: CandidateScored) -> None:
            progress.update(bar, completed=ev.evaluations,
                            info=f"best {ev.best_dev_score:.2f} · calls {ev.calls} · saved {ev.calls_saved}")

        @staticmethod
        def on_run_finished(ev: Event) -> None:
            progress.update(bar, info="")

        on_run_failed = on_run_finished

    def on_event(ev: Event) -> None:
        route(ev, Shown)

    try:
        with progress:
            run_id = await (client.resume_run(resume) if resume is not None else client.start_run(
                task or "", settings=overrides, endpoint=endpoint, model=model, instructions=instructions))
            last = await client.wait_run(run_id, on_event)
        if isinstance(last, RunFailed):
            raise IZError(last.problem, last.fix)
        return last.summary
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await client.close()


def _print_summary(s: dict[str, Any]) -> None:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("run", f"{s['run_id']}  ({s['task']}, {s['method']}, {s['status']}"
              + (f", stopped by the {s['stop_reason']} budget" if s.get("status") == "stopped" else "") + ")")
    t.add_row("best instruction", Text(s.get("best_instruction") or "-"))
    t.add_row("dev score", _fmt(s.get("dev_score")))
    t.add_row("test score", _fmt(s.get("test_score")))
    t.add_row("evaluations", f"{s['evaluations']} ({s.get('evaluations_saved', 0)} duplicates not re-scored)")
    t.add_row("black-box calls", f"{s['calls']} (saved by cache and dedup: {s['calls_saved']})")
    if s.get("raced_out"):
        n = s["raced_out"]
        t.add_row("racing", f"{n} candidate{'s' if n != 1 else ''} stopped early: {s['answers_skipped']} dev "
                            "answers not asked (they could no longer beat the best)")
    t.add_row("tokens", str(s["tokens"]))
    if "cost_text" in s:
        t.add_row("cost", s["cost_text"])
    t.add_row("time", f"{s['seconds']:.1f} s" if s.get("seconds") is not None else "-")
    out_console.print(t)


@click.command()
@click.option("--task", help="Only runs of this task.")
@click.option("--method", help="Only runs of this method.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def runs(task: str | None, method: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    h = open_history()
    rows = h.runs(task=task, method=method, limit=limit)
    if not rows and task is not None:
        _check_task_name(h, task)
    if not rows and method is not None:
        get_method(method)  # an unknown method name says which there are
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no runs match those filters" if task or method else
                   "no runs yet: start one with `iz run TASK` or from the TUI (`iz`)")
        return
    cells = [[str(r["id"]), r["task"], r["method"], r["status"], str(r["evaluations"]), _fmt(r["best_dev_score"]),
              _fmt(r["test_score"]), _cost_cell(r), r["best_instruction"] or ""] for r in rows]
    click.echo(plain_table(["id", "task", "method", "status", "evals", "dev", "test", "cost", "best instruction"],
                           cells))


def _check_task_name(h: History, task: str) -> None:
    """A filter that matched nothing because no task has that name (no task folder, no recorded run) is an error
    naming the task, not an empty list that looks like "nothing yet"."""
    from engine.tasks import task_names

    if task not in task_names() and not h.runs(task=task, limit=1):
        raise IZError(f"no task named {task!r} (and no run of one)", "list tasks with `iz tasks list`")


def _cost_cell(row: dict[str, Any]) -> str:
    """A run's cost in a listing: ``$0.0123``, ``free`` (a local endpoint) or ``?`` (no prices in the profile)."""
    from engine.cost import run_prices

    prices, free = run_prices(row)
    cost = Usage.of_row(row).cost(prices)
    return "free" if free else ("?" if cost is None else f"${cost:.4f}")


@click.command()
@click.argument("run_id", type=int)
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True,
              help="How many candidates to list (best first).")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def show(run_id: int, top: int, as_json: bool) -> None:
    """Show one run and its best candidates."""
    h = open_history()
    data = export_data(h, run_id=run_id)
    if as_json:
        click.echo(to_json(data))
        return
    r = data["runs"][0]
    out_console.print(f"[bold]run {r['id']}[/] {r['task']} · {r['method']} · {r['status']} · "
                      f"{r['endpoint'].get('name')} ({r['endpoint'].get('model')})")
    out_console.print(f"best: [green]{escape(r['best_instruction'] or '-')}[/]  dev {_fmt(r['best_dev_score'])}  "
                      f"test {_fmt(r['test_score'])}")
    out_console.print(f"[dim]made with {escape(made_with(r.get('provenance')))}[/]")
    out_console.print(f"evaluations {r['evaluations']} · calls {r['calls']} (saved {r['calls_saved']}) · "
                      f"tokens {Usage.of_row(r).tokens} · {_fmt(r['seconds'])} s")
    out_console.print(f"cost {r['cost_text']}")
    # Numbers never wrap; the instruction takes the rest of the width (wrapping whole words), so a listing reads
    # well at 80 columns.
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
    for name in ("id", "it", "dev", "test", "rerank"):
        t.add_column(name, no_wrap=True, justify="right")
    t.add_column("instruction", ratio=1, overflow="fold")
    for c in data["candidates"][:top]:
        t.add_row(str(c["id"]), str(c["iteration"]), _fmt(c["dev_score"]), _fmt(c["test_score"]),
                  _fmt(c["rerank_score"]), Text(c["instruction"]))
    out_console.print(t)


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--top", "top_k", default=3, show_default=True, help="Rerank the top K of the run by dev score.")
@click.option("--candidate", "candidate_ids", type=int, multiple=True, help="Candidate ids instead of a run.")
@click.option("--split", type=click.Choice(["test", "dev"]), default="test", show_default=True)
@click.option("-n", "--examples", "n_examples", type=click.IntRange(min=1), help="Examples to score on.")
@click.option("--endpoint", help="Score on another endpoint profile or URL.")
@click.option("--model", help="Score with another model.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def rerank(run_id: int | None, top_k: int, candidate_ids: tuple[int, ...], split: str, n_examples: int | None,
           endpoint: str | None, model: str | None, as_json: bool) -> None:
    """Re-score the top K candidates of RUN_ID (or chosen candidates) and sort them by the new score."""
    if endpoint or model:  # a profile or model that is not there fails before anything is looked up
        from engine.config import load_config

        checked_endpoint(load_config(), endpoint, model)
    if not candidate_ids:
        if run_id is None:
            raise click.UsageError("give a RUN_ID or --candidate ID")
        h = open_history()
        h.run(run_id)  # a run that does not exist is an error, not an empty table
        cands = h.candidates(run_id, status="scored")
        seen, ids = set(), []
        for c in sorted(cands, key=lambda c: (-(c["dev_score"] or 0), c["id"])):
            if c["instruction"] not in seen:
                seen.add(c["instruction"])
                ids.append(c["id"])
        candidate_ids = tuple(ids[:top_k])

    async def go() -> list[dict[str, Any]]:
        async with EngineClient(on_event=lambda e: isinstance(e, RerankProgress) and err_console.print(
                f"  {e.done}/{e.total}: candidate {e.candidate_id} → {e.score:.3f}")) as client:
            return await client.rerank(list(candidate_ids), split=split, n_examples=n_examples, endpoint=endpoint,
                                       model=model)

    results = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(results))
        return
    t = Table("id", "dev", "old test", f"new ({split})", "n", "instruction")
    for r in results:
        t.add_row(str(r["candidate_id"]), _fmt(r["dev_score"]), _fmt(r["test_score"]), _fmt(r["rerank_score"]),
                  str(r["n_examples"]), Text(r["instruction"]))
    out_console.print(t)


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--candidate", "candidate_ids", type=int, multiple=True, help="Export these candidates instead.")
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@friendly_errors
def export(run_id: int | None, candidate_ids: tuple[int, ...], fmt: str, output: Path | None) -> None:
    """Export a run (or chosen candidates) as JSON or Markdown."""
    if run_id is None and not candidate_ids:
        raise click.UsageError("give a RUN_ID or --candidate ID")
    data = export_data(open_history(), run_id=run_id, candidate_ids=list(candidate_ids) or None)
    text = to_json(data) if fmt == "json" else to_markdown(data)
    if output:
        _write_whole(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)


@click.command()
@click.argument("query", required=False, default="")
@click.option("--task")
@click.option("--run", "run_id", type=int)
@click.option("--starred", is_flag=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@friendly_errors
def search(query: str, task: str | None, run_id: int | None, starred: bool, limit: int) -> None:
    """Full-text search over every instruction ever scored (best match first)."""
    h = open_history()
    if run_id is not None:
        h.run(run_id)  # a run that does not exist is an error, not "no match"
    rows = h.search(query or None, task=task, run_id=run_id, starred=starred or None, limit=limit)
    if not rows and task is not None:
        _check_task_name(h, task)
    if not rows:
        click.echo("no matching instructions")
        return
    cells = [[str(r["id"]), str(r["run_id"]), r["task"], _fmt(r["dev_score"]), _fmt(r["test_score"]),
              r["instruction"]] for r in rows]
    click.echo(plain_table(["id", "run", "task", "dev", "test", "instruction"], cells))
