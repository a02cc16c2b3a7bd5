"""The first preparation of a model is visible: while a slow generator loads, the run screen's status moves.

A real :class:`engine.runner.Engine` serves the app over a real wire (an :class:`engine.server.EngineServer` in
this process, on a socket pair); only the model is a stand-in, one whose ``load`` takes a few seconds in stages
the way a first GGUF load does (converting the tokenizer, dequantising the embeddings). The run then fails on an
endpoint that refuses connections, which is not what is tested here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from textual.widgets import Static

from engine import generator_setup
from engine.config import Config, EndpointProfile
from engine.runner import Engine
from engine.server import EngineServer
from engine.wire.client import EngineClient
from iz_tui.app import IZApp
from iz_tui.screens.home import HomeScreen
from iz_tui.screens.run import RunScreen

from .helpers import wait_for


class SlowGenerator:
    """Loads in three stages of ``pause`` seconds each, reporting each (and the share done) to ``progress``."""

    catalog_name = None

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.progress: Any = None

    def load(self) -> SlowGenerator:
        stages = ["converting the tokenizer (once)", "dequantising the embeddings (once)",
                  "loading the weights"]
        for i, stage in enumerate(stages, start=1):
            for part in range(4):
                if self.progress is not None:
                    self.progress(stage, i, len(stages), part / 4 if i == 2 else None)
                time.sleep(self.pause / 4)
        return self


def serve_in_process(engine: Engine) -> Any:
    """An engine factory for the app: the real server and client, joined by a socket pair in this loop."""
    held: list[Any] = []

    class Out:
        """The server's output as the file it expects (write, flush), over an asyncio stream."""

        def __init__(self, writer: asyncio.StreamWriter) -> None:
            self.writer = writer

        def write(self, data: bytes) -> None:
            self.writer.write(data)

        def flush(self) -> None:
            pass

    def factory(on_event: Any) -> EngineClient:
        client = EngineClient(on_event=on_event)
        server_sock, client_sock = socket.socketpair()

        async def start() -> EngineClient:
            s_reader, s_writer = await asyncio.open_connection(sock=server_sock)
            c_reader, c_writer = await asyncio.open_connection(sock=client_sock)
            server = EngineServer(Out(s_writer), engine=engine)  # type: ignore[arg-type]
            held.append(asyncio.create_task(server.serve(s_reader)))
            return client.attach(c_reader, c_writer)

        client.start = start  # type: ignore[method-assign]
        return client

    return factory


@pytest.mark.timeout(60)
async def test_the_status_moves_while_a_slow_generator_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    slow = SlowGenerator(pause=1.6)
    monkeypatch.setattr(generator_setup, "make_generator", lambda *a, **k: slow)
    # a folder stands for a Hugging Face model: the engine's cheap file checks pass it
    monkeypatch.setattr(generator_setup, "generator_spec", lambda settings: (str(tmp_path), "slow-model"))
    config = Config(default_endpoint="refused", endpoints={
        "refused": EndpointProfile(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0)})
    engine = Engine(config)
    app = IZApp(config=config, engine_factory=serve_in_process(engine))
    seen: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("ctrl+r")
        run = await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen, what="run screen")

        def status() -> str:
            return str(run.query_one("#run-status", Static).render())

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and run.state not in ("failed", "finished"):
            text = status()
            if "preparing generator" in text and (not seen or seen[-1] != text):
                seen.append(text)
            await asyncio.sleep(0.1)
        await wait_for(pilot, lambda: run.state in ("failed", "finished"), timeout=30,
                       what=f"the run to end (status: {status()!r}, seen: {seen})")
    # Every second a new line: "step i/3", the seconds so far, the stage, the share of the slow stage.
    assert len(seen) >= 4, seen
    assert any("step 1/3" in s and "converting the tokenizer" in s for s in seen), seen
    assert any("step 2/3" in s and "dequantising the embeddings" in s and "%" in s for s in seen), seen
    assert any("step 3/3" in s for s in seen), seen
    assert all(s.startswith("status: preparing generator slow-model · ") for s in seen), seen
    seconds = [int(next(p for p in s.split(" · ") if p.endswith(" s")).removesuffix(" s")) for s in seen]
    assert seconds == sorted(seconds) and seconds[-1] >= 3  # the clock keeps going, never a stalled line
