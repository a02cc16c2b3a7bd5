"""The engine's wire (engine/wire + engine/server.py) end to end over real pipes, with a fake core.

The server coroutine runs in the test's event loop and talks to an :class:`EngineClient` (or to the test itself,
for requests a client would never send) over two ``os.pipe()``s, so everything between the front end and the core
is exercised: encoding, the method registry on both sides, routing, errors keeping their class, events in order,
and what a client does when its engine goes away. No model and no subprocess: each test takes milliseconds. The
real ``python -m engine serve`` process is covered by tests/integration/test_engine_e2e.py.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.errors import (
    ConfigError,
    EndpointError,
    EngineError,
    GeneratorError,
    IZError,
    ModelError,
    ProtocolError,
    SchemaTooNewError,
    StoreError,
    TaskError,
)
from engine.server import EngineServer
from engine.wire import dispatch, protocol
from engine.wire.client import EngineClient
from engine.wire.events import (
    CandidateProposed,
    Event,
    RerankProgress,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)

pytestmark = pytest.mark.timeout(10)

#: Every wait in these tests is bounded, so a wiring bug fails fast instead of hanging the suite.
WAIT_S = 3.0


class FakeHistory:
    def __init__(self) -> None:
        self.status: dict[int, str] = {}

    def run(self, run_id: int) -> dict[str, Any]:
        return {"id": run_id, "status": self.status.get(run_id, "running")}


@dataclass
class FakeEngine:
    """The surface of :class:`engine.runner.Engine` the server drives, without a model or a store.

    ``create_run`` raises the IZError class named by a task called ``raise:<ClassName>`` (or a RuntimeError for
    ``raise:RuntimeError``); ``execute`` plays a short scripted run, or waits for ``release`` when told to hang.
    """

    created: list[dict[str, Any]] = field(default_factory=list)
    history: FakeHistory = field(default_factory=FakeHistory)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def create_run(self, task: str, settings: dict[str, Any] | None, *, endpoint: str | None, model: str | None,
                   instructions: list[str]) -> int:
        if task.startswith("raise:"):
            name = task.split(":", 1)[1]
            if name == "RuntimeError":
                raise RuntimeError("a bug in the core")
            raise IZError.registry[name](f"{name} raised by the core", f"fix for {name}")
        self.created.append({"task": task, "settings": settings, "endpoint": endpoint, "model": model,
                             "instructions": instructions})
        return len(self.created)

    async def execute(self, run_id: int, *, emit: Any, cancel: asyncio.Event, resumed: bool) -> None:
        emit(RunStarted(run_id, "antonyms", "random", 3, resumed=resumed))
        if self.hang:
            await self.release.wait()
        for i in range(3):
            emit(Status(run_id, f"step {i}"))
            emit(CandidateProposed(run_id, candidate_id=10 + i, iteration=0, position=i, instruction=f"do {i}"))
            await asyncio.sleep(0)
        status = "cancelled" if cancel.is_set() else "finished"
        emit(RunFinished(run_id, status, None, {"run_id": run_id}))

    async def rerank(self, candidate_ids: list[int], *, split: str, n_examples: int | None, endpoint: str | None,
                     model: str | None, emit: Any) -> list[dict[str, Any]]:
        for done, cid in enumerate(candidate_ids, 1):
            emit(RerankProgress(0, cid, done, len(candidate_ids), 0.5))
        return [{"candidate_id": cid, "split": split, "score": 0.5} for cid in candidate_ids]

    def status(self) -> dict[str, Any]:
        return {"generator_loaded": False, "embedded_url": None, "history": ":fake:"}

    async def aclose(self) -> None:
        self.closed = True


async def _read_end(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


async def _write_end(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                     os.fdopen(fd, "wb", buffering=0))
    return asyncio.StreamWriter(transport, proto, None, loop)


@dataclass
class Wire:
    """Both ends of one connection: the server (and its fake core) and the test's end of the two pipes."""

    server: EngineServer
    engine: FakeEngine
    to_server: asyncio.StreamWriter
    from_server: asyncio.StreamReader
    serving: asyncio.Task[None]

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one raw message (checked by nobody on this side) and read the server's next line."""
        self.to_server.write(protocol.encode(message))
        await self.to_server.drain()
        return protocol.decode(await asyncio.wait_for(self.from_server.readline(), WAIT_S))


@asynccontextmanager
async def wire(engine: FakeEngine | None = None) -> AsyncIterator[Wire]:
    """An EngineServer serving in this loop over two pipes; the caller holds the other ends."""
    engine = engine or FakeEngine()
    c2s_read, c2s_write = os.pipe()
    s2c_read, s2c_write = os.pipe()
    server_out = os.fdopen(s2c_write, "wb", buffering=0)
    server = EngineServer(server_out, engine=engine)
    server_in = await _read_end(c2s_read)

    async def serve() -> None:
        try:
            await server.serve(server_in)
        finally:
            server_out.close()  # what the process's exit does to its stdout: the client sees the end

    serving = asyncio.create_task(serve())
    w = Wire(server, engine, await _write_end(c2s_write), await _read_end(s2c_read), serving)
    try:
        yield w
    finally:
        server.stopping.set()
        w.to_server.close()
        await asyncio.wait_for(asyncio.gather(serving, return_exceptions=True), WAIT_S)


@asynccontextmanager
async def connected(engine: FakeEngine | None = None) -> AsyncIterator[tuple[EngineClient, Wire, list[Event]]]:
    """An EngineClient attached to an in-process server; yields the client, the wire and the callback's log."""
    seen: list[Event] = []
    async with wire(engine) as w:
        client = EngineClient(on_event=seen.append).attach(w.from_server, w.to_server)
        try:
            yield client, w, seen
        finally:
            await asyncio.wait_for(client.close(timeout=WAIT_S), WAIT_S)


# -- requests and answers ---------------------------------------------------------------------------------------

async def test_a_request_is_routed_to_its_handler_and_answered() -> None:
    async with connected() as (client, w, _):
        status = await client.status()
        assert status["history"] == ":fake:" and status["pid"] == os.getpid() and status["active_runs"] == []
        run_id = await client.start_run("antonyms", settings={"n_dev": 3}, model="m", instructions=["a"])
        assert run_id == 1
        assert w.engine.created == [{"task": "antonyms", "settings": {"n_dev": 3}, "endpoint": None, "model": "m",
                                     "instructions": ["a"]}]
        rows = await client.rerank([4, 5], split="dev")
        assert rows == [{"candidate_id": 4, "split": "dev", "score": 0.5},
                        {"candidate_id": 5, "split": "dev", "score": 0.5}]
        assert await client.cancel_run(99) is False  # not running here: answered, not an error
    assert w.engine.closed  # shutdown (sent by close) closed the core
    assert client.dead is not None and not client.alive


async def test_an_unknown_method_is_refused_on_both_sides() -> None:
    client = EngineClient()
    with pytest.raises(ProtocolError) as err:
        await client.call("explode", now=True)
    assert err.value.problem == "unknown method 'explode'"
    assert "start_run" in (err.value.fix or "") and "shutdown" in (err.value.fix or "")
    assert client.proc is None  # refused before anything was started or sent
    # A request that no client would send: the server answers with the same error, its class by name.
    async with wire() as w:
        answer = await w.answer(protocol.request(41, "explode"))
        assert answer == {"id": 41, "error": err.value.to_dict()}
        assert (await w.answer(protocol.request(42, "status")))["id"] == 42  # the connection goes on


@pytest.mark.parametrize(("method", "params", "words"), [
    ("start_run", {"tusk": "antonyms"}, ["unexpected 'tusk'", "missing 'task'"]),
    ("cancel_run", {}, ["missing 'run_id'"]),
    ("status", {"verbose": True}, ["unexpected 'verbose'"]),
])
async def test_bad_parameters_are_refused_with_what_the_method_takes(method: str, params: dict[str, Any],
                                                                     words: list[str]) -> None:
    usage = dispatch.METHODS[method].usage()
    async with wire() as w:
        answer = await w.answer(protocol.request(3, method, params))
    assert answer["error"]["type"] == "ProtocolError"
    assert answer["error"]["problem"].startswith(f"bad parameters for {method}: ")
    for word in words:
        assert word in answer["error"]["problem"]
    assert answer["error"]["fix"] == f"it takes {usage}"
    assert w.engine.created == []  # the handler never ran
    # The client refuses the same call before sending anything.
    client = EngineClient()
    with pytest.raises(ProtocolError, match=f"bad parameters for {method}"):
        await client.call(method, **params)
    assert client.proc is None  # nothing was started to send it


async def test_a_parameter_of_the_wrong_type_is_a_protocol_error_not_a_crash() -> None:
    async with connected() as (client, _, _):
        with pytest.raises(ProtocolError, match="bad parameters for cancel_run"):
            await client.call("cancel_run", run_id=[1, 2])  # unhashable: the handler's TypeError
        assert (await client.status())["active_runs"] == []


async def test_a_malformed_line_gets_an_error_about_no_request() -> None:
    async with wire() as w:
        w.to_server.write(b"{not json\n")
        await w.to_server.drain()
        answer = protocol.decode(await asyncio.wait_for(w.from_server.readline(), WAIT_S))
        assert answer["id"] is None and answer["error"]["type"] == "ProtocolError"
        assert "malformed request" in answer["error"]["problem"]
        assert (await w.answer(protocol.request(1, "status")))["result"]["history"] == ":fake:"


# -- errors keep their class ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ConfigError, TaskError, EndpointError, StoreError, SchemaTooNewError, ModelError,
                                 GeneratorError, IZError])
async def test_an_izerror_arrives_as_the_same_class_with_problem_and_fix(cls: type[IZError]) -> None:
    async with connected() as (client, _, _):
        with pytest.raises(IZError) as err:
            await client.start_run(f"raise:{cls.__name__}")
    assert type(err.value) is cls
    assert err.value.problem == f"{cls.__name__} raised by the core"
    assert err.value.fix == f"fix for {cls.__name__}"
    assert err.value.exit_code == cls.exit_code


async def test_a_core_bug_arrives_as_an_engine_error_that_points_at_the_log() -> None:
    async with connected() as (client, _, _):
        with pytest.raises(EngineError) as err:
            await client.start_run("raise:RuntimeError")
        assert type(err.value) is EngineError
        assert err.value.problem == "RuntimeError: a bug in the core" and err.value.fix == "see the engine log"
        assert client.alive


def test_from_dict_falls_back_to_engine_error_for_a_name_it_does_not_know() -> None:
    for name in ("InternalError", "NoSuchError", None, "ValueError"):
        exc = IZError.from_dict({"type": name, "problem": "p", "fix": None})
        assert type(exc) is EngineError and exc.problem == "p" and exc.fix is None
    again = IZError.from_dict(TaskError("bad task", "fix it").to_dict())
    assert type(again) is TaskError and str(again) == "bad task\n  fix: fix it"
    # The registry is filled by subclassing: a class defined anywhere is known by its name.
    local = type("LocalTestError", (EndpointError,), {})
    assert type(IZError.from_dict({"type": "LocalTestError", "problem": "x"})) is local


async def test_a_plain_izerror_from_a_handler_is_an_izerror() -> None:
    engine = FakeEngine()
    engine.history.status[3] = "finished"
    async with connected(engine) as (client, _, _):
        with pytest.raises(IZError) as err:
            await client.resume_run(3)
    assert type(err.value) is IZError and "already finished" in err.value.problem


async def test_an_error_about_no_request_marks_the_client_dead_with_its_class() -> None:
    """What `python -m engine serve` does with a bad config: one id-less error, then it exits."""
    async with connected() as (client, w, _):
        w.server.send(protocol.error_from(None, ConfigError("bad config", "fix the config")))
        with pytest.raises(ConfigError, match="bad config"):
            for _ in range(100):
                await client.status()  # answered until the client has read the error line
        assert isinstance(client.dead, ConfigError) and not client.alive


# -- events -----------------------------------------------------------------------------------------------------

async def test_events_reach_the_callback_and_the_queue_in_order() -> None:
    async with connected() as (client, _, seen):
        run_id = await client.start_run("antonyms")
        queued: list[Event] = []
        last = await asyncio.wait_for(client.wait_run(run_id, queued.append), WAIT_S)
    assert isinstance(last, RunFinished) and last.status == "finished" and last.run_id == run_id
    assert queued == seen  # the callback and the queue see the same events, in the same order
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["RunStarted"] + ["Status", "CandidateProposed"] * 3 + ["RunFinished"]
    assert [e.message for e in seen if isinstance(e, Status)] == ["step 0", "step 1", "step 2"]
    assert [e.position for e in seen if isinstance(e, CandidateProposed)] == [0, 1, 2]
    assert all(e.run_id == run_id for e in seen)


async def test_rerank_progress_arrives_before_the_answer() -> None:
    async with connected() as (client, _, seen):
        rows = await client.rerank([7, 8, 9])
    assert [r["candidate_id"] for r in rows] == [7, 8, 9]
    assert [(e.candidate_id, e.done, e.total) for e in seen if isinstance(e, RerankProgress)] == [
        (7, 1, 3), (8, 2, 3), (9, 3, 3)]


async def test_cancel_reaches_a_running_run() -> None:
    engine = FakeEngine(hang=True)
    async with connected(engine) as (client, _, _):
        run_id = await client.start_run("antonyms")
        assert (await client.status())["active_runs"] == [run_id]
        assert await client.cancel_run(run_id) is True
        engine.release.set()
        last = await asyncio.wait_for(client.wait_run(run_id), WAIT_S)
    assert isinstance(last, RunFinished) and last.status == "cancelled"


async def test_when_the_engine_goes_away_pending_calls_and_runs_fail_at_once() -> None:
    engine = FakeEngine(hang=True)
    async with connected(engine) as (client, w, _):
        run_id = await client.start_run("antonyms")
        w.serving.cancel()  # the engine vanishes mid-run: its output ends, nothing more is answered
        last = await asyncio.wait_for(client.wait_run(run_id), WAIT_S)
        assert isinstance(last, RunFailed) and f"--resume {run_id}" in (last.fix or "")
        with pytest.raises(EngineError, match="closed its connection"):
            await client.status()
        assert not client.alive
        for task, _ in list(w.server.runs.values()):  # the vanished engine's run goes with it
            task.cancel()


# -- one registry for both sides --------------------------------------------------------------------------------

def test_both_sides_use_the_one_method_registry() -> None:
    names = set(dispatch.METHODS)
    assert names == {"start_run", "resume_run", "cancel_run", "rerank", "status", "shutdown"}
    server_handlers = {n.removeprefix("do_") for n in vars(EngineServer) if n.startswith("do_")}
    assert server_handlers == names  # a handler for every method, and no handler for an undeclared one
    assert all(callable(getattr(EngineClient, n, None)) for n in names)  # a typed helper for every method
    # Binding checks every handler's parameters against the declaration.
    server = EngineServer(io.BytesIO(), engine=FakeEngine())
    assert server.dispatcher._handlers.keys() == names
    for name, spec in dispatch.METHODS.items():
        assert spec.name == name and spec.usage().startswith(f"{name}(")


def test_a_handler_that_does_not_match_its_declaration_is_refused_at_bind_time() -> None:
    class Wrong(EngineServer):
        async def do_cancel_run(self, run: int) -> dict[str, Any]:  # type: ignore[override]
            return {}

    with pytest.raises(TypeError, match="the handler of cancel_run takes"):
        Wrong(io.BytesIO())

    class Missing:
        pass

    with pytest.raises(TypeError, match="missing"):
        dispatch.Dispatcher.bind(Missing())


def test_the_wire_package_stays_light() -> None:
    """The TUI imports the client: it must bring the standard library and engine.errors, nothing heavy."""
    code = ("import sys\nimport engine.wire.client, engine.wire.dispatch\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    loaded = set(out.stdout.split())
    assert not loaded & {"pydantic", "httpx", "torch", "transformers", "botorch", "textual", "numpy"}
