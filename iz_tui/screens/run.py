"""The live run: progress over the budget, a best-so-far plot, candidates as they arrive, cancel, the result.

Everything here is driven by engine events (the app forwards the ones of this run), so the screen shows the same
thing whether the run started a second ago or is being resumed; errors arrive as a RunFailed event (the engine
said what went wrong) or an EngineError (the engine died) and are shown as words and a next step.

The counts line at the top and the result at the bottom show the same numbers: both render :class:`RunTotals`,
the engine's run totals from its latest event (each scored candidate, then the finished run's summary, which
adds the test calls).

Events are queued and applied together every :attr:`RunScreen.FLUSH_S` (the end of the run at once): the
candidates table repaints every visible cell whenever a row is added or a cell changes, so a burst of 25
proposals, or candidates scored a few milliseconds apart, costs one repaint of the table, the bar, the counts and
the plot instead of one per event, and the keys stay answered while a run streams.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, DataTable, Header, ProgressBar, Static

from engine.errors import IZError
from engine.wire.events import (
    CandidateProposed,
    CandidateScored,
    Event,
    IterationDone,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)
from iz_tui.formatting import fmt_score, friendly_error
from iz_tui.messages import EngineEvent
from iz_tui.requests import RunRequest, stored_budget
from iz_tui.run_events import RunPhase, RunTotals, route
from iz_tui.screens.base import BaseScreen
from iz_tui.widgets.footer import QuietFooter
from iz_tui.widgets.plot import BestPlot
from iz_tui.widgets.stable_table import StableTable

BEST = "◆"


def _plain(text: str) -> Text:
    """A cell as plain text: a str cell is parsed as markup again on every repaint of the table."""
    return Text(text, end="", no_wrap=True)


class RunScreen(BaseScreen[None]):
    """One run, live."""

    BINDINGS = [
        Binding("x", "cancel", "Cancel run"),
        Binding("o", "open_history", "Open in history"),
        Binding("c", "copy_best", "Copy best"),
        Binding("u", "resume", "Resume", show=False),
        Binding("escape", "back", "Back"),
    ]

    #: Seconds between applications of the queued engine events (each repaints the table and the plot once).
    FLUSH_S = 0.15

    def __init__(self, request: RunRequest | None = None, *, resume_run_id: int | None = None) -> None:
        super().__init__()
        self.request = request
        self.run_id: int | None = resume_run_id
        self.totals = RunTotals(budget=request.budget if request else 0)
        self._phase = RunPhase.STARTING
        self.best_id: int | None = None
        self.best_instruction: str | None = None
        self.summary: dict[str, Any] = {}
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._cancel_requested = False
        self._best_score = float("-inf")
        self._queued: list[Event] = []  # engine events not applied yet
        self._flush_timer: Timer | None = None
        self._progress: tuple[int | None, int] | None = None  # the bar's (total, progress), not shown yet
        self._plot_stale = False

    # -- layout -------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._title_text(), id="run-title")
        yield Static("starting the engine…", id="run-status")
        with Horizontal(id="run-progress"):
            yield ProgressBar(total=self.totals.budget or None, show_eta=False, show_percentage=False,
                              id="run-bar")
            yield Static("", id="run-counts")
        yield Static("", id="run-cost", classes="hidden")
        yield BestPlot("best dev score over evaluations", id="run-plot")
        yield StableTable(id="run-cands", cursor_type="row", zebra_stripes=True)
        with Vertical(id="run-result", classes="hidden"):
            yield Static("", id="run-result-text")
            with Horizontal(id="run-result-buttons"):
                yield Button("Open in history", variant="primary", compact=True, id="btn-history")
                yield Button("Copy best", compact=True, id="btn-copy")
                yield Button("New run", compact=True, id="btn-new")
        with Horizontal(id="run-buttons"):
            yield Button("Cancel run (x)", variant="error", compact=True, id="btn-cancel")
        yield QuietFooter()

    def _title_text(self) -> str:
        if self.request is None:
            return f"[b]run {self.run_id}[/] (resumed)"
        r = self.request
        return f"[b]{escape(r.task)}[/] · {r.method} · endpoint {escape(r.endpoint)}" + (
            f" · run {self.run_id}" if self.run_id else "")

    def on_mount(self) -> None:
        table = self.query_one("#run-cands", DataTable)
        table.add_column(" ", key="best", width=1)
        table.add_column("#", key="pos", width=3)
        table.add_column("it", key="it", width=2)
        table.add_column("dev", key="dev", width=5)
        table.add_column("note", key="cache", width=6)  # "hit": answered from the cache; "cut N": raced out
        table.add_column("instruction", key="instruction")
        table.border_title = "Candidates"
        if self.request is not None:
            self._start()
        elif self.run_id is not None:
            self._prefill_from_history(self.run_id)
            self._resume()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show in the footer only the keys that make sense now (no cancel once the run has ended)."""
        if action == "cancel":
            return not self.state.ended
        if action == "resume":
            return self.state.resumable and self.run_id is not None
        if action == "open_history":
            return self.run_id is not None
        if action == "copy_best":
            return bool(self.best_instruction)
        return True

    @property
    def state(self) -> RunPhase:
        """The run's phase (iz_tui/run_events.py); setting it updates the keys the footer shows."""
        return self._phase

    @state.setter
    def state(self, value: RunPhase | str) -> None:
        self._phase = RunPhase(value)
        if self.is_mounted:
            self.refresh_bindings()

    def on_unmount(self) -> None:
        self.app.unlisten(self)

    # -- talking to the engine ----------------------------------------------------------------------------
    @work(exclusive=True, group="engine")
    async def _start(self) -> None:
        assert self.request is not None
        r = self.request
        try:
            client = await self.app.engine()
            self._set_status("engine started; creating the run…")
            self.run_id = await client.start_run(r.task, settings=r.settings, endpoint=r.endpoint,
                                                 instructions=list(r.instructions))
        except IZError as exc:
            self._fail(exc.problem, exc.fix)
            return
        except OSError as exc:  # the engine could not even be spawned
            self._fail(f"cannot start the engine process: {exc.strerror or exc}",
                       "check the installation (`iz --help` should work) and try again")
            return
        self.state = RunPhase.RUNNING
        self.query_one("#run-title", Static).update(self._title_text())
        self.app.listen(self, self.run_id)
        if self._cancel_requested:
            self.action_cancel()

    @work(exclusive=True, group="engine")
    async def _resume(self) -> None:
        assert self.run_id is not None
        try:
            client = await self.app.engine()
            self.app.listen(self, self.run_id, replay=False)
            await client.resume_run(self.run_id)
        except IZError as exc:
            self._fail(exc.problem, exc.fix)
            return
        self.state = RunPhase.RUNNING
        self._show_running()

    def _prefill_from_history(self, run_id: int) -> None:
        """On resume, show what the run already scored (the engine re-sends only what it does from now on)."""
        h = self.history
        run = h.run(run_id)
        self.totals.budget = stored_budget(run)
        self.totals.update(run)
        from engine.cost import run_cost

        self.totals.cost = run_cost(run)
        self.query_one("#run-title", Static).update(
            f"[b]{escape(run['task'])}[/] · {run['method']} · endpoint {escape(run['endpoint'].get('name', '?'))}"
            f" · run {run_id} (resumed)")
        bar = self.query_one("#run-bar", ProgressBar)
        bar.update(total=self.totals.budget or None)
        n = 0
        for c in h.candidates(run_id):
            self._add_row(c["id"], c["position"], c["iteration"], c["instruction"])
            if c["status"] == "scored":
                n += 1
                self._scored_row(c["id"], c["dev_score"], bool(c["cache_hit"]), n, c["instruction"],
                                 cut=len(c["scores"] or []) if c.get("stopped_early") else None)
        bar.update(progress=n)
        self._show_counts()
        self._show_plot()

    def on_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        if ev.run_id != self.run_id:
            return
        self._queued.append(ev)
        if isinstance(ev, (RunFinished, RunFailed)):
            self._flush()  # the end shows at once, with everything before it
        elif self._flush_timer is None:
            self._flush_timer = self.set_timer(self.FLUSH_S, self._flush)

    def _flush(self) -> None:
        """Apply the queued events in order, then show the progress they made (bar, counts, plot) once."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        queued, self._queued = self._queued, []
        if not queued:
            return
        with self.app.batch_update():
            for ev in queued:
                self._apply(ev)
            if self._progress is not None:
                total, progress = self._progress
                self._progress = None
                self.query_one("#run-bar", ProgressBar).update(total=total, progress=progress)
                self._show_counts()
            self._show_plot()

    def _apply(self, ev: Event) -> None:
        route(ev, self)  # iz_tui/run_events.py: the one table from event to handler

    def on_run_started(self, ev: RunStarted) -> None:
        self.totals.budget = ev.budget
        self.totals.estimate = ev.estimate or self.totals.estimate
        self.query_one("#run-bar", ProgressBar).update(total=ev.budget)
        self._show_counts()
        self._set_status(f"run {ev.run_id} started: {ev.budget} evaluations to spend")
        for note in ev.notes:
            self.notify(note, title="Note")

    def on_status(self, ev: Status) -> None:
        self._set_status(ev.message)

    def on_candidate_proposed(self, ev: CandidateProposed) -> None:
        self._add_row(ev.candidate_id, ev.position, ev.iteration, ev.instruction)

    def on_candidate_scored(self, ev: CandidateScored) -> None:
        self._on_scored(ev)

    def on_iteration_done(self, ev: IterationDone) -> None:
        self._set_status(f"iteration {ev.iteration} done · best dev {fmt_score(ev.best_dev_score)} "
                         f"after {ev.evaluations} evaluations")

    def on_run_finished(self, ev: RunFinished) -> None:
        self._finished(ev)

    def on_run_failed(self, ev: RunFailed) -> None:
        self._fail(ev.problem, ev.fix)

    # -- updates ------------------------------------------------------------------------------------------
    # The status, counts and cost lines are one line high whatever they say (iz.tcss), so their updates skip the
    # layout pass: each asked for a re-arrangement of the whole screen, 36 in a 150-evaluation run.
    def _set_status(self, text: str) -> None:
        self.query_one("#run-status", Static).update(f"[dim]status:[/] {escape(text)}", layout=False)

    def _add_row(self, cid: int, position: int, iteration: int, instruction: str) -> None:
        table = self.query_one("#run-cands", DataTable)
        if str(cid) in table.rows:
            return
        # A Text, not a str: a str cell is read as markup ("[input]" in an instruction would vanish) and parsed
        # again on every repaint of the table.
        table.add_row(_plain(""), _plain(str(position + 1)), _plain(str(iteration)), _plain("…"), _plain(""),
                      Text(instruction), key=str(cid))

    def _on_scored(self, ev: CandidateScored) -> None:
        self._add_row(ev.candidate_id, ev.position, ev.iteration, ev.instruction)
        self._scored_row(ev.candidate_id, ev.dev_score, ev.cache_hit, ev.evaluations, ev.instruction,
                         best=(ev.best_candidate_id, ev.best_dev_score), cut=ev.stopped_after)
        self._progress = (ev.budget or None, ev.evaluations)  # the bar and the counts: once the batch is applied
        self.totals.update(ev)

    def _show_counts(self) -> None:
        self.query_one("#run-counts", Static).update(escape(self.totals.counts()), layout=False)
        line = self.totals.versus_estimate()
        cost = self.query_one("#run-cost", Static)
        cost.set_class(line is None, "hidden")
        cost.update(f"[dim]{escape(line or '')}[/]", layout=False)

    def _scored_row(self, cid: int, dev: float | None, cache_hit: bool, evaluations: int, instruction: str,
                    best: tuple[int | None, float] | None = None, cut: int | None = None) -> None:
        """``cut``: racing stopped it after this many dev examples (its dev score is their mean)."""
        table = self.query_one("#run-cands", DataTable)
        key = str(cid)
        table.update_cell(key, "dev", _plain(fmt_score(dev)))
        table.update_cell(key, "cache", _plain(f"cut {cut}") if cut else _plain("hit") if cache_hit else _plain(""))
        if best is None:  # prefilled from the history: work the running best out here
            best = (cid, dev) if dev is not None and dev > self._best_score else (self.best_id, self._best_score)
        best_id, best_score = best
        self._best_score = best_score if best_score is not None else self._best_score
        if best_id is not None and best_id != self.best_id:
            if self.best_id is not None and str(self.best_id) in table.rows:
                table.update_cell(str(self.best_id), "best", _plain(""))
            if str(best_id) in table.rows:
                table.update_cell(str(best_id), "best", Text(BEST, style="bold green"))
            self.best_id = best_id
            if best_id == cid:
                first = self.best_instruction is None
                self.best_instruction = instruction
                if first:
                    self.refresh_bindings()  # "copy best" is offered from now on
        self._xs.append(float(evaluations))
        self._ys.append(max(float(self._best_score), 0.0))
        self._plot_stale = True

    def _show_plot(self) -> None:
        if self._plot_stale:
            self._plot_stale = False
            self.query_one("#run-plot", BestPlot).set_series([("best", self._xs, self._ys)])

    def _show_running(self) -> None:
        self.query_one("#run-plot").styles.height = 8
        self.query_one("#run-result").add_class("hidden")
        self.query_one("#run-buttons").remove_class("hidden")

    def _show_result(self, markup: str, *, ok: bool) -> None:
        box = self.query_one("#run-result")
        # The plot gives a line to the result. Set on the plot alone: a class on the screen restyled every widget
        # of it (the table's cells included), the longest pause of a run's screen (bench/history_scale.py).
        self.query_one("#run-plot").styles.height = 7
        box.remove_class("hidden")
        box.set_class(not ok, "failed")
        self.query_one("#run-result-text", Static).update(markup)
        self.query_one("#run-buttons").add_class("hidden")
        self.query_one("#btn-history").display = self.run_id is not None
        self.query_one("#btn-copy").display = bool(self.best_instruction)
        self.query_one("#btn-history", Button).focus()

    def _finished(self, ev: RunFinished) -> None:
        s = ev.summary
        self.summary = s
        self.totals.update(s)
        self._show_counts()
        self.state = ev.status
        self.best_id = s.get("best_candidate_id") or self.best_id
        self.best_instruction = s.get("best_instruction") or self.best_instruction
        head = {
            "finished": "[b green]Finished[/]",
            "cancelled": "[b yellow]Cancelled[/] (u resumes)",
            "stopped": f"[b yellow]Stopped by the {ev.stop_reason} budget[/]",
        }.get(ev.status, ev.status)
        best = escape(self.best_instruction or "-")
        self._show_result(
            f"{head} · {self.totals.evaluations} evaluations · {escape(self.totals.spent)} · "
            f"{s.get('seconds') or 0:.0f} s\n"
            f"best: [b]{best}[/]\n"
            f"dev {fmt_score(s.get('dev_score'))} · test {fmt_score(s.get('test_score'))}"
            + (f" · racing skipped {s['answers_skipped']} dev answers ({s['raced_out']} "
               f"candidate{'s' if s['raced_out'] != 1 else ''} cut)" if s.get("raced_out") else ""),
            ok=ev.status == "finished",
        )
        self._set_status(f"run {ev.run_id} {ev.status}")

    def _fail(self, problem: str, fix: str | None) -> None:
        self.state = RunPhase.FAILED
        head, todo = friendly_error(problem, fix)
        resume = f"\n[dim]resume it later with u (or `iz run --resume {self.run_id}`)[/]" if self.run_id else ""
        self._show_result(f"[b red]The run failed:[/] {escape(head)}\n[b]What to do:[/] {escape(todo)}{resume}",
                          ok=False)
        self._set_status("failed")

    # -- actions ------------------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        if self.state.ended:
            self.notify("the run is not running", severity="information")
            return
        if self.run_id is None:
            self._cancel_requested = True
            self._set_status("cancelling as soon as the run starts…")
            return
        self.state = RunPhase.CANCELLING
        self._set_status("cancelling… (stops after the candidate being scored; it stays resumable)")
        self._send_cancel(self.run_id)

    @work(group="cancel")
    async def _send_cancel(self, run_id: int) -> None:
        try:
            client = await self.app.engine()
            await client.cancel_run(run_id)
        except IZError as exc:
            self.notify(exc.problem.splitlines()[0], title="Cancel failed", severity="error")

    def action_resume(self) -> None:
        if not self.state.resumable or self.run_id is None:
            return
        self.state = RunPhase.STARTING
        self._set_status(f"resuming run {self.run_id}…")
        self._show_running()
        self._resume()

    def action_open_history(self) -> None:
        if self.run_id is None:
            self.notify("the run has not started yet", severity="warning")
            return
        self.app.open_history(self.run_id, self.best_id)

    def action_copy_best(self) -> None:
        if self.best_instruction:
            self.app.copy_text(self.best_instruction, "best instruction")
        else:
            self.notify("no instruction scored yet", severity="warning")

    def action_back(self) -> None:
        if not self.state.ended:
            self.notify("the run goes on in the engine; find it in the history (h)", title="Still running")
        self.app.pop_screen()

    @on(Button.Pressed, "#btn-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#btn-history")
    def _history_pressed(self) -> None:
        self.action_open_history()

    @on(Button.Pressed, "#btn-copy")
    def _copy_pressed(self) -> None:
        self.action_copy_best()

    @on(Button.Pressed, "#btn-new")
    def _new_pressed(self) -> None:
        self.app.pop_screen()
