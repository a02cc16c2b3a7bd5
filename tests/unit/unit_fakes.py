"""Stand-ins shared by the fast unit tests: a loopback OpenAI-compatible endpoint and an instant "pull".

Fakes are for unit tests of one piece; the integration tests run the same paths against the real llama.cpp
server and real model files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from engine.config import Config, EndpointProfile
from engine.models import catalog
from engine.runner import Engine
from engine.store import open_history

#: The words that mark an APE proposal request (the paper's forward template).
FORWARD = "I gave a friend an instruction"


def is_proposal(text: str) -> bool:
    """A proposal: APE's in either prompt style (the paper's forward template or the direct question), or
    OPRO's meta-prompt (it asks for an instruction between <INS> tags)."""
    from engine.prompts import DIRECT_QUESTION

    return FORWARD in text or DIRECT_QUESTION in text or "end it with </INS>" in text


class FakeEndpoint:
    """A stdlib HTTP server on 127.0.0.1 speaking chat and completions: a proposal (a prompt holding the
    forward template) is answered with ``propose(body)``, anything else with ``answer``; every request body is
    recorded with its headers, so tests check what went over the wire. ``fail_status`` makes every request fail
    with that HTTP status and ``fail_body`` (a JSON error by default); ``delay`` slows each answer down."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.answer = "elephant"
        #: When set, answers a scoring request from its prompt text instead of ``answer``.
        self.answer_for: Callable[[str], str] | None = None
        self.fail_status: int | None = None
        self.fail_body = json.dumps({"error": {"message": "request refused"}})
        self.delay = 0.0
        self.propose: Callable[[dict[str, Any]], str] = (
            lambda body: f" write the answer number {body.get('seed')}.\nInput: echo")
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.fail_status is not None:
                    data = fake.fail_body.encode()
                    self.send_response(fake.fail_status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                prompt = json.dumps(body.get("messages") or body.get("prompt"))
                if is_proposal(prompt):
                    text = fake.propose(body)
                elif fake.answer_for is not None:
                    text = fake.answer_for(json.loads(prompt)[-1]["content"] if body.get("messages")
                                           else body["prompt"])
                else:
                    text = fake.answer
                chat = self.path.endswith("/chat/completions")
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                raw = json.dumps({"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 3}})
                data = raw.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the client may open 32 connections at once; the default 5 drops some

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def proposals(self) -> list[dict[str, Any]]:
        """The bodies of the APE proposal requests."""
        return [r["body"] for r in self.requests if is_proposal(json.dumps(r["body"]))]

    def asking(self, instruction: str) -> int:
        """How many requests carried ``instruction`` in their prompt."""
        return sum(instruction in json.dumps(r["body"].get("messages") or r["body"].get("prompt"))
                   for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_pull(name: str) -> Path:
    """A sparse file of the catalog size under the pulled name (instant, takes no disk): "pulled" as far as the
    catalog's size check goes, never loadable."""
    entry = catalog.get(name)
    target = catalog.pulled_file(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        fh.truncate(entry.bytes)
    return target


class _Points(list):  # type: ignore[type-arg]
    """What ``Engine._next_points`` returns, minus torch: rows of floats with ``tolist()``."""

    def tolist(self) -> list[list[float]]:
        return [list(row) for row in self]


class FakeGenerator:
    """Stands in for the local model: ``instructions`` hands out the scripted texts in order (then repeats the
    last one forever), one per soft-prompt point, and records how many it was asked for each time."""

    def __init__(self, script: list[str], resamples: list[str] | None = None) -> None:
        self.script = list(script)
        self.resamples = list(resamples or [])
        self.asked: list[int] = []
        self.sampled: list[tuple[int, float, int]] = []
        self.last = self.script[0]
        self.projections = 0
        self.styles: list[str | None] = []  # the prompt style of every call

    def projection(self, intrinsic_dim: int, n_soft_tokens: int, seed: int, kind: str) -> object:
        self.projections += 1
        return ("projection", intrinsic_dim, n_soft_tokens, seed, kind)

    def instructions(self, Z: Any, demos: Any, proj: Any, n_soft_tokens: int,  # noqa: N803
                     sample: tuple[float, int] | None = None, style: str | None = None) -> list[str]:
        assert proj[0] == "projection" and len(demos) > 0
        self.styles.append(style)
        n = len(Z)
        if sample is not None:
            # A second try by sampling: the scripted ``resamples`` in order, then an echo of the last text handed
            # out (which the run has, so a repeat stays a repeat unless a test scripts otherwise).
            self.sampled.append((n, *sample))
            return [self.resamples.pop(0) if self.resamples else self.last for _ in range(n)]
        self.asked.append(n)
        out = []
        for _ in range(n):
            out.append(self.script.pop(0) if len(self.script) > 1 else self.script[0])
        self.last = out[-1] if out else self.script[0]
        return out

    def embed(self, texts: list[str]) -> Any:
        """A stand-in for the hidden states: letter counts, so texts sharing words lie close (numpy, no model)."""
        import numpy as np

        self.embedded = getattr(self, "embedded", 0) + len(texts)
        rows = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], float) + 1e-3
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)




def _points(self: Any, ctx: Any, iteration: int, n: int) -> _Points:
    d = ctx.settings.intrinsic_dim
    return _Points([[0.01 * (iteration + 1) * (i + 1)] * d for i in range(n)])


def scripted_points(methods: Any) -> dict[str, Any]:
    """The methods with every soft-prompt method's next points replaced by plain, predictable ones."""
    from engine.methods.soft import SoftPromptMethod

    return {name: (type(f"Scripted{type(m).__name__}", (type(m),), {"next_points": _points})()
                   if isinstance(m, SoftPromptMethod) else m) for name, m in methods.items()}


def engine_with_fakes(fake: FakeEndpoint, tmp_path: Path, generator: FakeGenerator | None = None) -> Engine:
    """A real :class:`Engine` (real store, real black-box client) on the fake endpoint ("fake", the default profile),
    with the scripted generator in place of the local model and plain points in place of the BO step."""
    config = Config(
        default_endpoint="fake",
        endpoints={
            "embedded": EndpointProfile(model="smollm2-135m-instruct"),
            "fake": EndpointProfile(base_url=fake.url, model="fake-model", max_retries=0),
        },
    )
    engine = Engine(config, open_history(tmp_path / "history.db"))
    if generator is not None:
        engine._generator = generator  # the attribute Engine.generator() caches the loaded model in

        engine.methods = scripted_points(engine.methods)  # skip torch / BO: not what is tested
    return engine


def run_to_end(engine: Engine, task: str, settings: Any, events: list[Any], **kw: Any) -> dict[str, Any]:
    """Run ``task`` to its end on ``engine`` (events appended to ``events``), then close the engine's clients."""

    async def go() -> dict[str, Any]:
        try:
            return await engine.run(task, settings, emit=events.append, **kw)
        finally:
            await engine.aclose()

    return asyncio.run(go())


@contextlib.contextmanager
def bo_inputs() -> Iterator[list[tuple[Any, Any]]]:
    """Record what each real BO step is given: ``bo.propose``'s (S, y), in order (the step still runs)."""
    from engine import bo

    seen: list[tuple[Any, Any]] = []
    real = bo.propose

    def spy(Z: Any, S: Any, y: Any, *a: Any, **kw: Any) -> Any:  # noqa: N803
        seen.append((S.clone(), y.clone()))
        return real(Z, S, y, *a, **kw)

    bo.propose = spy
    try:
        yield seen
    finally:
        bo.propose = real
