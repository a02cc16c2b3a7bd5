"""``python -m engine serve``: the engine process the TUI and the CLI drive.

Why a process: the generator (torch) takes seconds to import and load, and a crash in native code must not take
the TUI down. The process keeps the generator and the embedded server warm across runs, runs several requests
at once (a run goes on while ``status`` or ``cancel_run`` is answered) and shuts the embedded server down with
itself. stdout carries only the protocol: the real stdout is kept for it and file descriptor 1 is pointed at
stderr, so a library that prints cannot corrupt the stream.

Which methods exist and what they take is declared once, in :mod:`engine.wire.dispatch`; this module only
provides their handlers (``do_<method>``), bound and checked against that declaration when the server is built.
An :class:`IZError` raised by a handler is answered with its class name, so the client raises the same class.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any, BinaryIO

from engine.config import load_config
from engine.errors import IZError, ProtocolError
from engine.wire import protocol
from engine.wire.dispatch import Dispatcher
from engine.wire.events import Event

log = logging.getLogger("engine.server")


class EngineServer:
    """Answers requests read from a stream by running the engine; writes answers and events to ``out``.

    ``engine`` is the core to drive (an :class:`engine.runner.Engine` by default, created when serving starts;
    tests pass a fake with the same methods)."""

    def __init__(self, out: BinaryIO, engine: Any = None) -> None:
        self.out = out
        self.engine: Any = engine
        self.dispatcher = Dispatcher.bind(self)
        self.runs: dict[int, tuple[asyncio.Task[Any], asyncio.Event]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self.gone = False  # the front end closed its end of the pipe

    def send(self, message: dict[str, Any]) -> None:
        """Write one message. Once the front end is gone (its end of the pipe closed: the TUI was killed), drop
        messages and stop serving, so runs are cancelled between candidates and stay resumable, instead of each
        failing on its next event with a BrokenPipeError."""
        if self.gone:
            return
        try:
            self.out.write(protocol.encode(message))
            self.out.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
            log.warning("the front end closed its end of the pipe: stopping (runs stay resumable)")
            self.stopping.set()

    def emit(self, event: Event) -> None:
        self.send(protocol.notification(event.to_dict()))

    async def serve(self, reader: asyncio.StreamReader) -> None:
        if self.engine is None:
            from engine.runner import Engine

            self.engine = Engine()
        while not self.stopping.is_set():
            line_task = asyncio.ensure_future(reader.readline())
            stop_task = asyncio.ensure_future(self.stopping.wait())
            done, _ = await asyncio.wait({line_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if stop_task in done:
                line_task.cancel()
                break
            stop_task.cancel()
            line = line_task.result()
            if not line:  # the parent closed our stdin (it exited): stop, taking the embedded server with us
                break
            if not line.strip():
                continue
            try:
                msg = protocol.decode(line)
            except ValueError as exc:
                self.send(protocol.error_from(None, ProtocolError(f"malformed request: {exc}",
                                                                  "send one JSON object per line")))
                continue
            t = asyncio.create_task(self.handle(msg))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        await self.shutdown()

    async def handle(self, msg: dict[str, Any]) -> None:
        msg_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or {}
        try:
            result = await self.dispatcher.dispatch(method, params)
            self.send(protocol.response(msg_id, result))
        except IZError as exc:
            self.send(protocol.error_from(msg_id, exc))
        except TypeError as exc:  # a parameter of the wrong type, found by the handler
            self.send(protocol.error_from(msg_id, ProtocolError(f"bad parameters for {method}: {exc}",
                                                                "check the request")))
        except Exception as exc:
            log.exception("request %s failed", method)
            self.send(protocol.error(msg_id, f"{type(exc).__name__}: {exc}", "see the engine log", "InternalError"))

    # -- methods ------------------------------------------------------------------------------------------
    async def do_start_run(
        self,
        task: str,
        settings: dict[str, Any] | None = None,
        endpoint: str | None = None,
        model: str | None = None,
        instructions: list[str] | None = None,
    ) -> dict[str, Any]:
        run_id = self.engine.create_run(task, settings, endpoint=endpoint, model=model,
                                        instructions=instructions or [])
        self._spawn(run_id, resumed=False)
        return {"run_id": run_id}

    async def do_resume_run(self, run_id: int) -> dict[str, Any]:
        if run_id in self.runs:
            raise IZError(f"run {run_id} is already running in this engine", "wait for it or cancel it")
        row = self.engine.history.run(run_id)
        if row["status"] == "finished":
            raise IZError(f"run {run_id} has already finished", "start a new run, or rerank its candidates")
        self._spawn(run_id, resumed=True)
        return {"run_id": run_id}

    def _spawn(self, run_id: int, resumed: bool) -> None:
        cancel = asyncio.Event()

        async def go() -> None:
            try:
                await self.engine.execute(run_id, emit=self.emit, cancel=cancel, resumed=resumed)
            except IZError:
                pass  # already recorded and sent as a run_failed event
            finally:
                self.runs.pop(run_id, None)

        self.runs[run_id] = (asyncio.create_task(go()), cancel)

    async def do_cancel_run(self, run_id: int) -> dict[str, Any]:
        entry = self.runs.get(run_id)
        if entry is None:
            return {"run_id": run_id, "cancelled": False}
        entry[1].set()
        return {"run_id": run_id, "cancelled": True}

    async def do_rerank(
        self,
        candidate_ids: list[int],
        split: str = "test",
        n_examples: int | None = None,
        endpoint: str | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.engine.rerank(candidate_ids, split=split, n_examples=n_examples, endpoint=endpoint,
                                        model=model, emit=self.emit)

    async def do_status(self) -> dict[str, Any]:
        return {**self.engine.status(), "pid": os.getpid(), "active_runs": sorted(self.runs)}

    async def do_shutdown(self) -> dict[str, Any]:
        self.stopping.set()
        return {"ok": True}

    async def shutdown(self) -> None:
        for _, cancel in self.runs.values():
            cancel.set()
        pending = [t for t, _ in self.runs.values()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        if self.engine is not None:
            await self.engine.aclose()


def serve() -> int:
    """Entry point of ``python -m engine serve``."""
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed from now on goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    logging.basicConfig(level=os.environ.get("IZ_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        load_config()
    except IZError as exc:
        proto_out.write(protocol.encode(protocol.error_from(None, exc)))
        return 2

    async def main() -> int:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        server = EngineServer(proto_out)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stopping.set)
        try:
            await server.serve(reader)
        except IZError as exc:  # the engine cannot start (a damaged, locked or unwritable history): say why
            log.error("cannot start: %s", exc)
            proto_out.write(protocol.encode(protocol.error_from(None, exc)))
            return 2
        return 0

    return asyncio.run(main())
