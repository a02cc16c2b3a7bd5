"""The sweep driver: the one writer of the user's history while workers run the cells.

What it does, in order: record the sweep and its grid (or load it, for ``--resume``); for each cell not finished,
create its run (or find the one it had), export the run's rows to a free worker, and replay what comes back —
every store write in the transaction it was made in, so the run appears in the history live, exactly as a local
run would; on a worker's death, replace the worker and give the cell to a worker again (the run resumes from what
was replayed, and the shared cache answers every call already paid for); on a cell's failure (a bad key, a bad
task), record it and go on. Killing the driver loses nothing recorded: ``--resume SWEEP_ID`` runs only the cells
that did not finish.

Threads: one per worker slot reads that worker's messages (and answers its cache look-ups); the calling thread
applies every message to the store, so writes have one order and one writer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import Config, load_config
from engine.errors import IZError
from engine.store import History, open_history
from engine.store.history import now
from engine.sweep.backends import ProcessSlot, RayPool, Slot, WorkerDied, start_ray, stop_ray, worker_env
from engine.sweep.journal import Replayer
from engine.sweep.spec import SweepSpec

log = logging.getLogger(__name__)

#: How many times a cell is handed out when its worker keeps dying (a crash that follows the cell is a bug).
MAX_ATTEMPTS = 3

Backend = Literal["local", "ray"]


@dataclass
class SweepEvent:
    """What the driver tells a front end: ``kind`` is one of sweep_started, cell_started, cell_progress,
    cell_finished, cell_failed, worker_died, sweep_finished; ``cell`` is the cell's row (task, method, seed,
    model, run_id, status...) where the event is about one."""

    kind: str
    sweep_id: int
    cell: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    cell: dict[str, Any]
    slot: int
    replayer: Replayer
    worker: str = ""


class SweepDriver:
    """Runs one sweep to its end with ``workers`` workers (local processes, or Ray actors with ``ray``)."""

    def __init__(
        self,
        *,
        workers: int = 2,
        ray: str | None = None,
        config: Config | None = None,
        history: History | None = None,
        on_event: Callable[[SweepEvent], None] | None = None,
    ) -> None:
        if workers < 1:
            raise IZError(f"--workers must be at least 1, not {workers}", "pass --workers 1 or more")
        self.workers = workers
        self.ray = ray
        self.config = config or load_config()
        self.history = history or open_history()
        self.on_event = on_event or (lambda _e: None)
        self.cancel = threading.Event()
        self._closing = threading.Event()
        self._slots: list[Slot] = []
        self.backend: Backend = "ray" if ray else "local"

    # -- set-up -------------------------------------------------------------------------------------------
    def create(self, spec: SweepSpec) -> int:
        """Record the sweep and its grid. Nothing runs yet; every cell's run is validated when it starts."""
        return self.history.create_sweep(spec.model_dump(), spec.cells(), backend=self.backend,
                                         workers=self.workers)

    def _start_slots(self) -> dict[str, Any]:
        config = self.config.model_dump()
        info: dict[str, Any] = {"backend": self.backend, "workers": self.workers}
        if self.ray is not None:
            info.update(start_ray(None if self.ray == "local" else self.ray, self.workers))
            pool = RayPool(self.history.path, config, worker_env() if info["local"] else {})
            self._slots = [pool.slot(i) for i in range(self.workers)]
        else:
            # Each slot answers its worker's cache look-ups on a connection of its own: the history's connection
            # belongs to this thread, which writes (sharing it across threads breaks its transactions).
            self._slots = [ProcessSlot(i, config, History(self.history.path)) for i in range(self.workers)]
        return info

    def _stop_slots(self, *, kill: bool) -> None:
        for slot in self._slots:
            try:
                slot.kill() if kill else slot.close()  # type: ignore[attr-defined]
            except Exception:  # stopping is best effort
                log.exception("stopping %s", slot.name)
        self._slots = []
        if self.ray is not None:
            stop_ray()

    # -- running ------------------------------------------------------------------------------------------
    def run(self, sweep_id: int) -> dict[str, Any]:
        """Run every cell of the sweep that has not finished; returns the sweep's row with its cells."""
        h = self.history
        sweep = h.sweep(sweep_id)
        spec = SweepSpec.model_validate(sweep["spec"])
        todo = deque(c for c in h.sweep_cells(sweep_id) if c["status"] != "finished")
        started = time.monotonic()
        self._closing.clear()
        h.update_sweep(sweep_id, status="running", started_at=sweep["started_at"] or now(), error=None,
                       backend=self.backend, workers=self.workers)
        from engine.runner import Engine  # validation and run creation only: nothing heavy is loaded

        engine = Engine(self.config, h)
        outq: queue.Queue[tuple[int, _Job, dict[str, Any]]] = queue.Queue()
        inboxes: list[queue.Queue[_Job | None]] = []
        threads: list[threading.Thread] = []
        busy: dict[int, _Job] = {}
        status = "interrupted"
        try:
            info = self._start_slots()
            self.on_event(SweepEvent("sweep_started", sweep_id, data={**info, "cells": len(h.sweep_cells(sweep_id)),
                                                                      "todo": len(todo)}))
            for i, slot in enumerate(self._slots):
                inbox: queue.Queue[_Job | None] = queue.Queue()
                t = threading.Thread(target=self._pump, args=(i, slot, inbox, outq), daemon=True,
                                     name=f"iz-sweep-slot-{i}")
                t.start()
                inboxes.append(inbox)
                threads.append(t)
            idle = list(range(len(self._slots)))
            while (todo or busy) and not self.cancel.is_set():
                while idle and todo:
                    cell = todo.popleft()
                    job = self._prepare(engine, spec, cell, idle[0])
                    if job is not None:
                        busy[idle.pop(0)] = job
                        inboxes[job.slot].put(job)
                try:
                    slot_i, job, msg = outq.get(timeout=0.2)
                except queue.Empty:
                    continue
                if self._handle(job, msg, todo):
                    busy.pop(slot_i, None)
                    idle.append(slot_i)
            if not self.cancel.is_set():
                cells = h.sweep_cells(sweep_id)
                status = "finished" if all(c["status"] == "finished" for c in cells) else "failed"
        finally:
            self._closing.set()  # from here a worker that dies was stopped by us: no replacement
            for inbox in inboxes:
                inbox.put(None)
            self._stop_slots(kill=bool(busy) or self.cancel.is_set())
            for job in busy.values():  # cut short: the run stays resumable, the cell unfinished
                self._leave(job)
            sweep = h.sweep(sweep_id)
            h.update_sweep(sweep_id, status=status, finished_at=now(),
                           seconds=round((sweep["seconds"] or 0.0) + time.monotonic() - started, 3))
        result = {**h.sweep(sweep_id), "cells": h.sweep_cells(sweep_id)}
        self.on_event(SweepEvent("sweep_finished", sweep_id, data={"status": status}))
        return result

    def _pump(self, index: int, slot: Slot, inbox: queue.Queue[_Job | None],
              outq: queue.Queue[tuple[int, _Job, dict[str, Any]]]) -> None:
        """A slot's thread: run the cells given to this worker, pass every message on, replace a dead worker."""
        reader = History(self.history.path)  # reads on a connection of this thread's own (see _start_slots)
        try:
            self._pump_jobs(index, slot, inbox, outq, reader)
        finally:
            reader.close()

    def _pump_jobs(self, index: int, slot: Slot, inbox: queue.Queue[_Job | None],
                   outq: queue.Queue[tuple[int, _Job, dict[str, Any]]], reader: History) -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            try:
                payload = {"run_id": job.cell["run_id"], "rows": reader.export_run_rows(job.cell["run_id"])}
                for msg in slot.run(payload):
                    outq.put((index, job, msg))
            except WorkerDied as exc:
                outq.put((index, job, {"type": "died", "problem": str(exc)}))
                if self.cancel.is_set() or self._closing.is_set():
                    return
                try:
                    slot.restart()
                except Exception as exc2:  # cannot replace it: the sweep goes on with fewer workers
                    log.exception("restarting %s", slot.name)
                    outq.put((index, job, {"type": "slot_lost", "problem": str(exc2)}))
                    return
            except Exception as exc:  # a bug in the driver side: report it as the cell's failure
                log.exception("sweep worker slot %s", slot.name)
                outq.put((index, job, {"type": "failed", "problem": f"{type(exc).__name__}: {exc}",
                                       "fix": "see the log"}))

    def _prepare(self, engine: Any, spec: SweepSpec, cell: dict[str, Any], slot: int) -> _Job | None:
        """Create the cell's run (validating its task, endpoint and settings), or reuse the one it has."""
        h = self.history
        sid = cell["sweep_id"]
        if cell["run_id"] is None:
            try:
                run_id = engine.create_run(
                    cell["task"], spec.run_settings(cell["method"], cell["seed"]), endpoint=spec.endpoint,
                    model=cell["model"], instructions=spec.manual_instructions(cell["task"]),
                )
            except IZError as exc:
                h.update_cell(cell["id"], status="failed", error=str(exc), attempts=cell["attempts"] + 1)
                self.on_event(SweepEvent("cell_failed", sid, {**cell, "status": "failed", "error": str(exc)}))
                return None
            h.update_cell(cell["id"], run_id=run_id)
            cell = {**cell, "run_id": run_id}
        elif h.run(cell["run_id"])["status"] == "finished":  # the driver stopped between the run and the cell
            h.update_cell(cell["id"], status="finished", error=None)
            self.on_event(SweepEvent("cell_finished", sid, {**cell, "status": "finished"}))
            return None
        cell = {**cell, "status": "running", "attempts": cell["attempts"] + 1, "error": None}
        h.update_cell(cell["id"], status="running", attempts=cell["attempts"], error=None)
        return _Job(cell, slot, Replayer(h, cell["run_id"]))

    def _handle(self, job: _Job, msg: dict[str, Any], todo: deque[dict[str, Any]]) -> bool:
        """Apply one worker message; True when the worker is free again."""
        h, cell, sid = self.history, job.cell, job.cell["sweep_id"]
        kind = msg["type"]
        if kind == "ops":
            job.replayer.apply(msg["ops"])
        elif kind == "hello":
            job.worker = f"{msg['host']}:{msg['pid']}"
            self.on_event(SweepEvent("cell_started", sid, cell, {"worker": job.worker, "pid": msg["pid"],
                                                                   "host": msg["host"]}))
        elif kind == "event":
            self.on_event(SweepEvent("cell_progress", sid, cell, msg["event"]))
        elif kind == "done":
            run_status = msg["summary"]["status"]
            status = "finished" if run_status in ("finished", "stopped") else "failed"
            error = None if status == "finished" else f"the run ended {run_status}"
            h.update_cell(cell["id"], status=status, error=error)
            self.on_event(SweepEvent(f"cell_{status}", sid, {**cell, "status": status, "error": error},
                                     msg["summary"]))
            return True
        elif kind == "failed":
            error = msg["problem"] + (f" (fix: {msg['fix']})" if msg.get("fix") else "")
            h.update_cell(cell["id"], status="failed", error=error)
            self.on_event(SweepEvent("cell_failed", sid, {**cell, "status": "failed", "error": error}))
            return True
        elif kind in ("died", "slot_lost"):
            retry = kind == "died" and cell["attempts"] < MAX_ATTEMPTS and not self.cancel.is_set()
            self._leave(job, error=msg["problem"], failed=not retry)
            self.on_event(SweepEvent("worker_died", sid, cell, {"problem": msg["problem"], "retry": retry,
                                                                  "worker": job.worker}))
            if retry:
                todo.appendleft(h.sweep_cells(sid)[cell["position"]])
            return kind == "died"
        return False

    def _leave(self, job: _Job, *, error: str | None = None, failed: bool = False) -> None:
        """A cell whose worker stopped: its run keeps what was replayed and is marked resumable."""
        h = self.history
        run = h.run(job.cell["run_id"])
        if run["status"] not in ("finished", "failed", "stopped"):
            h.update_run(run["id"], status="cancelled",
                         error=error or "the sweep stopped; resume it with `iz sweep --resume`")
        if h.run(run["id"])["status"] == "finished":
            h.update_cell(job.cell["id"], status="finished", error=None)
        else:
            h.update_cell(job.cell["id"], status="failed" if failed else "pending", error=error)


def run_sweep(spec: SweepSpec | None = None, *, resume: int | None = None, **driver: Any) -> dict[str, Any]:
    """Create (or resume) a sweep and run it to its end: the one entry point the CLI and the benchmark use."""
    d = SweepDriver(**driver)
    sweep_id = resume if resume is not None else d.create(spec)  # type: ignore[arg-type]
    return d.run(sweep_id)
