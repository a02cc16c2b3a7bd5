"""The black-box client against a real local HTTP server that misbehaves on purpose.

The server (stdlib ``http.server`` in a thread, on 127.0.0.1) follows a script: one action per request, then plain
success. Each test asserts what the server actually received (how many requests, how many at once), so retries,
the cache and the limits are checked on the wire, not on mocks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.blackbox import BlackBox, score_instruction
from engine.blackbox.client import parse_retry_after
from engine.config import EndpointProfile
from engine.errors import EndpointError
from engine.store import open_history

SECRET = "sk-test-SECRET-7f3a9c-do-not-leak"
FAST = 0.01  # retry_wait_scale: backoff waits of a few milliseconds


@dataclass
class Action:
    kind: str = "ok"  # ok | status | sleep | garbage | nochoices | drop
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    seconds: float = 0.0
    text: str = "hello"
    usage: bool = True


class FakeEndpoint:
    """A scripted OpenAI-compatible server. ``script`` is consumed one action per request; then ``default``."""

    def __init__(self) -> None:
        self.script: list[Action] = []
        self.default = Action()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append(
                        {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                    )
                    action = fake.script.pop(0) if fake.script else fake.default
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.act(self, action, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    @staticmethod
    def act(h: BaseHTTPRequestHandler, a: Action, body: dict[str, Any]) -> None:
        if a.kind == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if a.kind == "sleep":
            time.sleep(a.seconds)
        if a.kind == "status":
            payload = (a.body or json.dumps({"error": {"message": f"scripted {a.status}"}})).encode()
            code = a.status
        elif a.kind == "garbage":
            payload, code = b"<html>502 Bad Gateway from a proxy, but with status 200</html>", 200
        elif a.kind == "nochoices":
            payload, code = json.dumps({"object": "chat.completion", "choices": []}).encode(), 200
        else:
            text = a.text
            if "messages" in body:
                choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
            else:
                choice = {"index": 0, "text": text}
            data: dict[str, Any] = {"object": "chat.completion", "choices": [choice]}
            if a.usage:
                data["usage"] = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
            payload, code = json.dumps(data).encode(), 200
        h.send_response(code)
        for k, v in a.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    yield server
    server.close()


def profile(url: str, **kw: Any) -> EndpointProfile:
    base: dict[str, Any] = {"base_url": url, "model": "test-model", "max_retries": 3, "timeout_s": 5.0}
    return EndpointProfile(**{**base, **kw})


async def complete(prof: EndpointProfile, prompt: str = "Say hello", **kw: Any) -> tuple[BlackBox, Any]:
    async with BlackBox(prof, retry_wait_scale=FAST, **kw) as bb:
        return bb, await bb.complete(prompt)


# -- transient faults are retried ---------------------------------------------------------------------------
async def test_429_honours_retry_after_then_succeeds(fake: FakeEndpoint) -> None:
    fake.script = [Action("status", 429, headers={"Retry-After": "1"})]
    t0 = time.monotonic()
    bb, c = await complete(profile(fake.url))
    elapsed = time.monotonic() - t0
    assert c.text == "hello" and not c.cache_hit
    assert fake.count == 2 and bb.requests_sent == 2 and bb.calls == 1
    assert elapsed >= 0.95, "Retry-After: 1 must be waited, even with a tiny backoff scale"


async def test_500_then_503_then_success(fake: FakeEndpoint) -> None:
    fake.script = [Action("status", 500), Action("status", 503)]
    bb, c = await complete(profile(fake.url))
    assert c.text == "hello"
    assert fake.count == 3 and bb.requests_sent == 3


async def test_slow_answer_times_out_then_succeeds(fake: FakeEndpoint) -> None:
    fake.script = [Action("sleep", seconds=1.5)]
    t0 = time.monotonic()
    bb, c = await complete(profile(fake.url, timeout_s=0.3))
    assert c.text == "hello"
    assert fake.count == 2 and bb.requests_sent == 2
    assert time.monotonic() - t0 < 1.4, "the client must give up on the slow request, not wait for it"


async def test_garbage_json_then_success(fake: FakeEndpoint) -> None:
    fake.script = [Action("garbage"), Action("nochoices")]
    bb, c = await complete(profile(fake.url))
    assert c.text == "hello"
    assert fake.count == 3


async def test_dropped_connection_then_success(fake: FakeEndpoint) -> None:
    fake.script = [Action("drop")]
    bb, c = await complete(profile(fake.url))
    assert c.text == "hello"
    assert fake.count == 2


async def test_gives_up_after_max_retries_with_a_clear_error(fake: FakeEndpoint) -> None:
    fake.default = Action("status", 503)
    with pytest.raises(EndpointError) as err:
        await complete(profile(fake.url, max_retries=2))
    assert fake.count == 3
    assert fake.url in str(err.value) and "3 attempts" in str(err.value)


async def test_garbage_until_the_end_is_a_clear_error(fake: FakeEndpoint) -> None:
    fake.default = Action("garbage")
    with pytest.raises(EndpointError) as err:
        await complete(profile(fake.url, max_retries=1))
    assert fake.count == 2
    assert "invalid answers" in str(err.value) and "/v1" in str(err.value)


async def test_unreachable_endpoint_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(EndpointError) as err:
        await complete(profile(url, max_retries=1))
    assert url in str(err.value) and "running" in str(err.value)


# -- permanent faults stop at once --------------------------------------------------------------------------
async def test_401_stops_at_once_naming_the_variable_not_the_key(
    fake: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IZ_TEST_API_KEY", SECRET)
    fake.default = Action("status", 401, body=json.dumps({"error": {"message": f"Incorrect API key {SECRET}"}}))
    with pytest.raises(EndpointError) as err:
        await complete(profile(fake.url, api_key_env="IZ_TEST_API_KEY"))
    assert fake.count == 1
    assert fake.requests[0]["authorization"] == f"Bearer {SECRET}"
    message = str(err.value)
    assert "IZ_TEST_API_KEY" in message and fake.url in message
    assert SECRET not in message and SECRET not in repr(err.value.to_dict())


async def test_missing_key_variable_is_named_and_nothing_is_sent(
    fake: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IZ_TEST_API_KEY", raising=False)
    with pytest.raises(EndpointError, match="IZ_TEST_API_KEY"):
        await complete(profile(fake.url, api_key_env="IZ_TEST_API_KEY"))
    assert fake.count == 0


async def test_404_names_the_model_and_url(fake: FakeEndpoint) -> None:
    fake.default = Action("status", 404)
    with pytest.raises(EndpointError) as err:
        await complete(profile(fake.url, model="no-such-model"))
    assert fake.count == 1
    assert "no-such-model" in str(err.value) and fake.url in str(err.value)
    assert err.value.fix and "/v1" in err.value.fix


async def test_other_4xx_carries_the_server_message_truncated(fake: FakeEndpoint) -> None:
    fake.default = Action("status", 400, body=json.dumps({"error": {"message": "context too long " + "x" * 1000}}))
    with pytest.raises(EndpointError) as err:
        await complete(profile(fake.url))
    assert fake.count == 1
    assert "context too long" in str(err.value) and len(str(err.value)) < 700


# -- requests, cache, limits --------------------------------------------------------------------------------
async def test_request_shape_chat_and_completions(fake: FakeEndpoint) -> None:
    await complete(profile(fake.url, stop=["\n\n"], max_tokens=7), "P1")
    await complete(profile(fake.url, api="completions"), "P2")
    chat, legacy = fake.requests
    assert chat["path"] == "/v1/chat/completions"
    assert chat["body"]["messages"] == [{"role": "user", "content": "P1"}]
    expected = {"model": "test-model", "temperature": 0.0, "max_tokens": 7, "stop": ["\n\n"]}
    assert {k: chat["body"][k] for k in expected} == expected
    assert chat["authorization"] is None
    assert legacy["path"] == "/v1/completions" and legacy["body"]["prompt"] == "P2"


async def test_usage_is_estimated_when_absent(fake: FakeEndpoint) -> None:
    fake.default = Action(text="a" * 40, usage=False)
    _, c = await complete(profile(fake.url), "p" * 80)
    assert (c.prompt_tokens, c.completion_tokens) == (20, 10)


async def test_second_identical_prompt_is_a_cache_hit_without_http(fake: FakeEndpoint, tmp_path: Path) -> None:
    history = open_history(tmp_path / "history.db")
    prof = profile(fake.url)
    async with BlackBox(prof, history, retry_wait_scale=FAST) as bb:
        first = await bb.complete("What is bigger, a whale or a mouse?")
        assert fake.count == 1 and not first.cache_hit
    async with BlackBox(prof, history, retry_wait_scale=FAST) as bb2:  # a new client: the cache is the history
        second = await bb2.complete("What is bigger, a whale or a mouse?")
        assert fake.count == 1, "a cache hit must send no HTTP request"
        assert second.cache_hit and second.text == first.text
        assert (second.prompt_tokens, second.completion_tokens) == (11, 3)
        assert (bb2.cache_hits, bb2.calls, bb2.requests_sent) == (1, 0, 0)
        other = await BlackBox(profile(fake.url, max_tokens=5), history).complete("What is bigger, a whale or a mouse?")
        assert not other.cache_hit and fake.count == 2, "different parameters are a different cache entry"
    rows = list(history.db.query("select * from cache"))
    assert len(rows) == 2 and all(r["base_url"] == fake.url for r in rows)
    assert all("Bearer" not in json.dumps(r) for r in rows)
    history.close()


async def test_failures_are_not_cached(fake: FakeEndpoint, tmp_path: Path) -> None:
    history = open_history(tmp_path / "history.db")
    fake.script = [Action("status", 400)]
    async with BlackBox(profile(fake.url), history, retry_wait_scale=FAST) as bb:
        with pytest.raises(EndpointError):
            await bb.complete("x")
        assert history.cache_get(bb.cache_key("x")) is None
        assert (await bb.complete("x")).text == "hello"
    history.close()


async def test_concurrency_is_bounded(fake: FakeEndpoint) -> None:
    fake.default = Action("sleep", seconds=0.15)
    async with BlackBox(profile(fake.url, concurrency=2), retry_wait_scale=FAST) as bb:
        results = await asyncio.gather(*(bb.complete(f"prompt {i}") for i in range(6)))
    assert [r.text for r in results] == ["hello"] * 6
    assert fake.count == 6 and fake.max_in_flight == 2


async def test_identical_prompts_in_flight_are_asked_once(fake: FakeEndpoint) -> None:
    fake.default = Action("sleep", seconds=0.1)
    async with BlackBox(profile(fake.url), retry_wait_scale=FAST) as bb:
        results = await asyncio.gather(*(bb.complete("same") for _ in range(4)))
    assert fake.count == 1 and bb.calls == 1 and bb.cache_hits == 3
    assert [r.cache_hit for r in results].count(False) == 1


async def test_requests_per_minute_spaces_requests(fake: FakeEndpoint) -> None:
    async with BlackBox(profile(fake.url, requests_per_minute=600), retry_wait_scale=FAST) as bb:
        t0 = time.monotonic()
        await asyncio.gather(*(bb.complete(f"p{i}") for i in range(4)))
        elapsed = time.monotonic() - t0
    assert fake.count == 4 and elapsed >= 0.29  # one every 0.1 s: the 4th starts at 0.3 s


def test_retry_after_parsing() -> None:
    import datetime as dt

    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:05 GMT", now=now) == pytest.approx(5.0)
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- scoring ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ex:
    input: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class _Task:  # a stand-in with the contract's shape (name, metric, prompt)
    name: str = "tiny"
    metric: str = "contains"

    def prompt(self, instruction: str, example: _Ex) -> str:
        return f"Instruction: {instruction}\n\nInput: {example.input}\n\nOutput:"


async def test_score_instruction_scores_each_example(fake: FakeEndpoint, tmp_path: Path) -> None:
    fake.default = Action(text="The answer is whale.")
    examples = [_Ex("whale, mouse", ("whale",)), _Ex("ant, horse", ("horse",))]
    history = open_history(tmp_path / "history.db")
    async with BlackBox(profile(fake.url), history, retry_wait_scale=FAST) as bb:
        res = await score_instruction(bb, _Task(), "Write the larger animal.", examples)  # type: ignore[arg-type]
        assert res.per_example == [1.0, 0.0] and res.mean == 0.5
        assert [o["example_index"] for o in res.outputs] == [0, 1]
        assert res.outputs[1] == {
            "example_index": 1, "input": "ant, horse", "answers": ["horse"], "output": "The answer is whale.",
            "score": 0.0, "cache_hit": False, "prompt_tokens": 11, "completion_tokens": 3,
            "latency_s": res.outputs[1]["latency_s"],
        }
        again = await score_instruction(bb, _Task(), "Write the larger animal.", examples)  # type: ignore[arg-type]
    assert fake.count == 2 and all(o["cache_hit"] for o in again.outputs) and again.mean == 0.5
    history.close()


async def test_score_instruction_fails_as_a_whole(fake: FakeEndpoint) -> None:
    fake.default = Action("status", 404)
    async with BlackBox(profile(fake.url), retry_wait_scale=FAST) as bb:
        with pytest.raises(EndpointError):
            await score_instruction(bb, _Task(), "x", [_Ex("a", ("a",)), _Ex("b", ("b",))])  # type: ignore[arg-type]
