"""Drive an engine process from another process (the TUI, the CLI, tests).

Spawns ``python -m engine serve`` (or speaks over streams it is given: :meth:`EngineClient.attach`, for an
in-process server in tests), sends requests, routes responses to their callers and events to a callback or queue.
Every call is checked against the protocol's declaration (:mod:`engine.wire.dispatch`) before it is sent, and an
error answer is raised as the same :class:`~engine.errors.IZError` class the engine raised (a ``TaskError`` stays
a ``TaskError``; a name this process does not know becomes an :class:`EngineError`).

If the process dies, every pending request fails at once with an :class:`EngineError` that says what happened
(exit code, last lines of its log) and what to do, and every run it was doing gets a ``run_failed`` event, so no
front end waits forever. stdlib only (plus the wire package and engine.errors): the TUI imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import EngineError, IZError
from engine.wire import dispatch, protocol
from engine.wire.events import Event, RunFailed, RunFinished, event_from_dict

EventCallback = Callable[[Event], Any]


class EngineClient:
    def __init__(
        self,
        on_event: EventCallback | None = None,
        *,
        env: dict[str, str] | None = None,
        python: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.on_event = on_event
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.env = env
        self.python = python or sys.executable
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._active_runs: set[int] = set()
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._stderr_task: asyncio.Task[None] | None = None
        self._eof = False
        #: Why the engine can no longer answer: it died, closed the stream, or refused to start (a bad config).
        self.dead: IZError | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        if self.dead is not None or self._stdin is None:
            return False
        return self.proc.returncode is None if self.proc is not None else not self._eof

    async def start(self) -> EngineClient:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The engine must import from the same tree as this client, wherever the caller's cwd is.
        env = paths.child_env(env)
        if self.log_path is None:
            self.log_path = Path(env.get("IZ_HOME") or paths.home()) / "logs" / "engine.log"
        self.proc = await asyncio.create_subprocess_exec(
            *paths.module_command(self.python, "engine", "serve"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, limit=2**24,
        )
        assert self.proc.stdout and self.proc.stdin
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        return self.attach(self.proc.stdout, self.proc.stdin)

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> EngineClient:
        """Speak the protocol over streams that are already open (the server's output, its input).

        :meth:`start` attaches to the process it spawns; tests attach to an :class:`engine.server.EngineServer`
        running in the same event loop over a pipe, which is the whole wire without a process to start."""
        self._stdout, self._stdin = reader, writer
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aenter__(self) -> EngineClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drain_stderr(self) -> None:
        assert self.proc and self.proc.stderr and self.log_path
        log = self._open_log(self.log_path)
        try:
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    return
                text = line.decode("utf-8", errors="replace")
                self._stderr_tail.append(text.rstrip())
                if log is not None:
                    try:
                        log.write(text)
                        log.flush()
                    except OSError:  # a full disk: stop logging, keep draining (the tail still says what died)
                        with contextlib.suppress(OSError):
                            log.close()
                        log = None
        finally:
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()

    @staticmethod
    def _open_log(path: Path) -> Any:
        """The engine log, readable by the user only (0600, folder 0700); None when it cannot be written (a
        read-only or missing data folder: the engine then says what is wrong with it, and the tail is kept)."""
        try:
            paths.private_file(path)
            return open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the drain
        except OSError:
            return None

    async def _read(self) -> None:
        assert self._stdout is not None
        try:
            while True:
                line = await self._stdout.readline()
                if not line:
                    break
                try:
                    msg = protocol.decode(line)
                except ValueError:
                    continue
                self._dispatch(msg)
        finally:
            self._eof = True
            await self._on_exit()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == protocol.EVENT:
            event = event_from_dict(msg["params"])
            if isinstance(event, RunFailed | RunFinished):
                self._active_runs.discard(event.run_id)
            self._deliver(event)
            return
        fut = self._pending.pop(msg.get("id"), None) if msg.get("id") is not None else None
        if "error" in msg:
            err = msg["error"] if isinstance(msg["error"], dict) else {"problem": str(msg["error"])}
            exc = IZError.from_dict(err)
            if msg.get("id") is None:  # an error about no request in particular (a bad config at start-up)
                self.dead = exc
                return
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        elif fut is not None and not fut.done():
            fut.set_result(msg.get("result"))

    def _deliver(self, event: Event) -> None:
        self.events.put_nowait(event)
        if self.on_event is not None:
            self.on_event(event)

    def _death(self) -> EngineError:
        """What to tell callers once the engine's output has ended."""
        if self.proc is None:
            return EngineError("the engine closed its connection", "restart iz")
        code = self.proc.returncode
        tail = "\n    ".join(list(self._stderr_tail)[-8:])
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return EngineError(
            f"the engine process {how}" + (f"; its last log lines:\n    {tail}" if tail else ""),
            f"see {self.log_path}; runs that were going on can be resumed with `iz run --resume RUN_ID`",
        )

    async def _on_exit(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), timeout=5)
        if self._stderr_task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr_task, timeout=2)
        if self.dead is None:
            self.dead = self._death()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self.dead)
        self._pending.clear()
        for run_id in sorted(self._active_runs):
            self._deliver(RunFailed(run_id, self.dead.problem, f"resume it with `iz run --resume {run_id}`"))
        self._active_runs.clear()

    async def call(self, method: str, **params: Any) -> Any:
        """Send one request and wait for its answer. The call is checked against the protocol first
        (ProtocolError, nothing sent); an error answer is raised as the engine's own IZError class."""
        dispatch.check(method, params)
        if self._stdin is None:
            await self.start()
        if self.dead is not None or not self.alive:
            raise self.dead or EngineError("the engine process is not running", "restart iz")
        assert self._stdin is not None
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        try:
            self._stdin.write(protocol.encode(protocol.request(self._next_id, method, params)))
            await self._stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader notices the exit and fails the future with the real reason
        return await fut

    # -- typed helpers: one per method of engine.wire.dispatch.METHODS ---------------------------------------
    async def start_run(self, task: str, *, settings: dict[str, Any] | None = None, endpoint: str | None = None,
                        model: str | None = None, instructions: list[str] | None = None) -> int:
        res = await self.call("start_run", task=task, settings=settings or {}, endpoint=endpoint, model=model,
                              instructions=instructions or [])
        self._active_runs.add(res["run_id"])
        return int(res["run_id"])

    async def resume_run(self, run_id: int) -> int:
        res = await self.call("resume_run", run_id=run_id)
        self._active_runs.add(run_id)
        return int(res["run_id"])

    async def cancel_run(self, run_id: int) -> bool:
        return bool((await self.call("cancel_run", run_id=run_id))["cancelled"])

    async def rerank(self, candidate_ids: list[int], *, split: str = "test", n_examples: int | None = None,
                     endpoint: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        return await self.call("rerank", candidate_ids=candidate_ids, split=split, n_examples=n_examples,
                               endpoint=endpoint, model=model)

    async def status(self) -> dict[str, Any]:
        return await self.call("status")

    async def shutdown(self) -> dict[str, Any]:
        """Ask the engine to stop (it stops the embedded servers with it); :meth:`close` also waits for it."""
        return await self.call("shutdown")

    async def wait_run(self, run_id: int, on_event: EventCallback | None = None) -> Event:
        """Consume events until the run finishes or fails; returns that last event."""
        while True:
            event = await self.events.get()
            if on_event is not None:
                on_event(event)
            if isinstance(event, RunFinished | RunFailed) and event.run_id == run_id:
                return event

    async def close(self, timeout: float = 20) -> None:
        """Ask the engine to shut down (it stops the embedded server), then make sure it is gone."""
        if self._stdin is None:
            return
        if self.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.shutdown(), timeout=5)
        with contextlib.suppress(Exception):
            self._stdin.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, timeout=5)

    def kill(self) -> None:
        """SIGKILL the engine (tests of crash recovery)."""
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
