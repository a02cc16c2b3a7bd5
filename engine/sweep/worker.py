"""A sweep worker: runs cells one after another with one warm engine (the generator stays loaded).

The same class serves both backends: a local worker process (:func:`process_main`, fed over a pipe) and a Ray
actor (engine.sweep.backends). It never opens the user's history: the engine works on a private scratch store
(:class:`engine.sweep.journal.JournalHistory`) and everything it writes goes back to the driver as messages:

- ``{"type": "hello", "pid", "host"}`` when a cell starts (the driver shows where it runs);
- ``{"type": "ops", "ops": [...]}`` — one committed transaction of store writes, in order;
- ``{"type": "event", "event": {...}}`` — the engine's progress events (engine.wire.events);
- last, ``{"type": "done", "summary"}`` or ``{"type": "failed", "problem", "fix"}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import IZError
from engine.sweep.journal import JournalHistory, Op, RemoteCache

log = logging.getLogger(__name__)

#: Events worth sending (a proposal burst is shown by the scores that follow it).
_EVENTS = {"run_started", "status", "candidate_scored", "run_finished", "run_failed"}


class CellWorker:
    """Runs sweep cells on one engine whose store is a private journaling file."""

    def __init__(self, config: dict[str, Any], remote: RemoteCache | None = None) -> None:
        from engine.config import Config
        from engine.runner import Engine

        self.dir = Path(tempfile.mkdtemp(prefix="iz-sweep-worker-"))
        self._out: queue.Queue[dict[str, Any]] = queue.Queue()
        self.history = JournalHistory(self.dir / "scratch.db", self._ops, remote)
        self.engine = Engine(Config.model_validate(config), self.history)
        # One event loop for the worker's life: the black-box clients (httpx) belong to the loop they were made
        # on, and keeping them keeps their connections and the embedded server warm between cells.
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="iz-sweep-worker", daemon=True)
        self._thread.start()

    def _ops(self, ops: list[Op]) -> None:
        self._out.put({"type": "ops", "ops": ops})

    def _emit(self, event: Any) -> None:
        if event.type in _EVENTS:
            self._out.put({"type": "event", "event": event.to_dict()})

    def run_cell(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Continue (or start) the run in ``payload`` (its rows, from the driver's store) to its end."""
        run_id = int(payload["run_id"])
        yield {"type": "hello", "pid": os.getpid(), "host": socket.gethostname()}
        self.history.import_run_rows(payload["rows"])
        fut = asyncio.run_coroutine_threadsafe(self.engine.execute(run_id, emit=self._emit), self.loop)
        while not (fut.done() and self._out.empty()):
            try:
                yield self._out.get(timeout=0.1)
            except queue.Empty:
                continue
        exc = fut.exception()
        if exc is None:
            yield {"type": "done", "summary": fut.result()}
        elif isinstance(exc, IZError):
            yield {"type": "failed", "problem": exc.problem, "fix": exc.fix}
        else:  # Engine.execute turns every error into an IZError; this is a bug in the worker itself
            yield {"type": "failed", "problem": f"{type(exc).__name__}: {exc}", "fix": "see the worker's log"}

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.engine.aclose(), self.loop).result(timeout=30)
        except Exception:  # closing is best effort: the process is going away
            log.exception("closing the sweep worker")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.history.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PipeCache:
    """The driver's response cache over a local worker's pipe: the driver answers each look-up from the user's
    history (reads only); the answers a worker pays for reach the driver as journal operations."""

    def __init__(self, conn: Any, lock: threading.Lock) -> None:
        self.conn = conn
        self.lock = lock
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()

    def get(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            self.conn.send({"type": "cache_get", "key": key})
            reply: dict[str, Any] = self.conn.recv()
        return reply.get("row")

    def put(self, row: dict[str, Any]) -> None:
        return None


def process_main(conn: Any) -> None:
    """A local worker process: the config first, then cells from the pipe until it closes; every message back."""
    logging.basicConfig(level=os.environ.get("IZ_LOG_LEVEL", "WARNING"))
    try:
        config = conn.recv()
    except (EOFError, OSError):
        return
    lock = threading.Lock()
    worker = CellWorker(config, PipeCache(conn, lock))
    try:
        while True:
            try:
                payload = conn.recv()
            except (EOFError, OSError):
                return  # the driver is gone
            if payload is None:
                return
            for msg in worker.run_cell(payload):
                with lock:
                    conn.send(msg)
    except (BrokenPipeError, EOFError, OSError):
        return  # the driver is gone mid-cell: its store keeps what it replayed; --resume does the rest
    finally:
        worker.close()


if __name__ == "__main__":  # `python -m engine.sweep.worker FD`, started by engine.sweep.backends.ProcessSlot
    import sys
    from multiprocessing.connection import Connection

    process_main(Connection(int(sys.argv[1])))
