"""Stand-ins for the reliability tests: a deterministic OpenAI-compatible endpoint on 127.0.0.1 that counts every
request, injects seeded faults and can SIGKILL the engine at a chosen moment; plus checks of the store and of
processes (read from /proc, so nothing outside the standard library is needed).

The endpoint answers from the request alone (a hash of it), so a run asked the same things gets the same answers
and the same scores, whatever failed, was retried or was killed on the way. Its log is the ground truth of what
was paid for: a request counts as *delivered* once its whole answer was written to the socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Transient faults, retried by the client: a run that meets them ends with the scores of a fault-free run.
FAULTS = ("429", "500", "503", "slow", "drop", "malformed", "nochoices", "nocontent")
#: Faults no retry fixes: the run stops with one clear message.
PERMANENT = ("401", "404", "hang", "stream")
#: The Retry-After a 429 carries (seconds, as the header's delta-seconds form).
RETRY_AFTER_S = "0.05"

_INPUT = re.compile(r"Input: (.*?)\n\nOutput:", re.S)


def user_text(body: dict[str, Any]) -> str:
    """The prompt a request carries: the last user message (chat) or the prompt (completions)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") or "" for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else ""
    return str(body.get("prompt") or "")


def is_proposal(text: str) -> bool:
    """An APE proposal request (the paper's forward template or the direct question), not a scoring one."""
    from engine.prompts import DIRECT_QUESTION

    return "I gave a friend an instruction" in text or "The instruction was to" in text or DIRECT_QUESTION in text


def answer_for(body: dict[str, Any]) -> str:
    """The endpoint's answer, a function of the request only.

    A scoring prompt (``Input: a, b ... Output:``) gets one of the items of its input, picked by a hash of the
    whole prompt (so the instruction decides which, and scores differ between instructions); an APE proposal gets
    one of a few instructions, picked by a hash of the prompt and the request's seed."""
    text = user_text(body)
    h = int(hashlib.sha256(f"{text}|{body.get('seed')}".encode()).hexdigest(), 16)
    if is_proposal(text):
        return f" write the animal that is number {h % 4} in size.\nInput: echo"
    m = _INPUT.search(text)
    if m:
        items = [p.strip() for p in m.group(1).split(",") if p.strip()] or [m.group(1).strip()]
        return items[h % len(items)]
    return "elephant"


def request_key(body: dict[str, Any]) -> str:
    """The identity of a black-box call: its whole body, canonically written."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


@dataclass
class Request:
    n: int  # 1-based arrival order
    path: str
    body: dict[str, Any]
    key: str
    text: str
    attempt: int  # how many times the same call arrived before this one
    fault: str | None = None
    delivered: bool = False
    trigger: bool = False  # the request that sets off a kill (see FakeOpenAI.kill_at_request)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def cache_id(self) -> tuple[str, Any]:
        """What the engine's cache row of this call records: the prompt's SHA-256 and the request's seed."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest(), self.body.get("seed")


class FakeOpenAI:
    """A loopback OpenAI-compatible server (chat and completions) for the reliability tests.

    - ``fault_rate`` of the requests get one of ``faults`` (see :data:`FAULTS`), decided by a seeded hash of the
      call and of how often it was asked before, so a run meets the same faults every time; a call never fails
      more than ``max_in_a_row`` times running (the client's retries must be able to get through).
    - ``permanent`` (one of :data:`PERMANENT`) answers every request after the first ``permanent_after``.
    - ``pad`` adds filler lines to scoring answers (same scores, big store rows: writes last long enough to be
      caught in the act).
    - :meth:`kill` SIGKILLs the engine: first it stops delivering answers and waits until every answer delivered
      so far is in the store's cache, so that at the kill *delivered* means *finished*; :meth:`kill_at_request`
      does it when the Nth request of a kind arrives, with that request in flight.
    """

    def __init__(self, *, fault_rate: float = 0.0, faults: Iterable[str] = FAULTS, seed: int = 0,
                 max_in_a_row: int = 3, slow_s: float = 1.0) -> None:
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.seed = seed
        self.max_in_a_row = max_in_a_row
        self.slow_s = slow_s
        self.permanent: str | None = None
        self.permanent_after = 0
        self.pad = 0  # characters of filler after each scoring answer's first line (big rows: slow writes)
        self.delay_s = 0.0  # every answer waits this long (a test that must catch a run still going on)
        self.log: list[Request] = []
        self.kills: list[int] = []
        self.lock = threading.Lock()
        self.gate = threading.Lock()  # held while an answer is written, and while a kill is prepared
        self.killed = threading.Event()  # no answer is delivered after a kill (until reset)
        self.hold_after: int | None = None  # requests arriving after this one get no answer until the kill
        self._trigger: tuple[int, Callable[[Request], bool], list[Request]] | None = None
        self._kill_target: tuple[int | Callable[[], int], Path | None, int] = (0, None, 0)
        self.closing = threading.Event()
        self._asked: dict[str, int] = {}
        self._in_a_row: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - /v1/models
                fake._send(self, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                try:
                    raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    body = json.loads(raw or b"{}")
                    req = fake._register(self.path, body)
                    if req.trigger:
                        fake._kill_at(req)
                    if fake.killed.is_set():
                        self.close_connection = True
                        return
                    fake._act(self, req)
                except OSError:
                    self.close_connection = True  # the client gave up (a timeout) or died (a kill)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    # -- what was asked ---------------------------------------------------------------------------------------
    def _register(self, path: str, body: dict[str, Any]) -> Request:
        key = request_key(body)
        with self.lock:
            attempt = self._asked.get(key, 0)
            self._asked[key] = attempt + 1
            req = Request(len(self.log) + 1, path, body, key, user_text(body), attempt)
            self.log.append(req)
            if self._trigger is not None and self.hold_after is None and not self.killed.is_set():
                n, where, seen = self._trigger
                if where(req):
                    seen.append(req)
                    if len(seen) == n:  # decided here, under the lock: no later request can slip through
                        req.trigger = True
                        self.hold_after = req.n
            return req

    def since(self, mark: int) -> list[Request]:
        with self.lock:
            return list(self.log[mark:])

    def mark(self) -> int:
        with self.lock:
            return len(self.log)

    def delivered(self, mark: int = 0) -> list[Request]:
        return [r for r in self.since(mark) if r.delivered]

    def reset(self) -> None:
        """Forget the armed kill, the kill flag and the injected failures (the log stays: tests slice it with
        :meth:`mark`)."""
        self.permanent = None
        self.permanent_after = 0
        self.pad = 0
        self._trigger = None
        self.hold_after = None
        self.killed.clear()

    # -- answers and faults -----------------------------------------------------------------------------------
    def _fault_for(self, req: Request) -> str | None:
        if self.permanent is not None and req.n > self.permanent_after:
            return self.permanent
        if not self.fault_rate or not self.faults:
            return None
        with self.lock:
            run = self._in_a_row.get(req.key, 0)
            rng = random.Random(f"{self.seed}|{req.key}|{req.attempt}")
            kind = rng.choice(self.faults) if rng.random() < self.fault_rate and run < self.max_in_a_row else None
            self._in_a_row[req.key] = run + 1 if kind else 0
        return kind

    def _act(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        kind = req.fault = self._fault_for(req)
        if kind is None:
            self._deliver(h, req)
        elif kind == "429":
            self._send(h, 429, {"error": {"message": "slow down"}}, {"Retry-After": RETRY_AFTER_S})
        elif kind in ("500", "503"):
            self._send(h, int(kind), {"error": {"message": f"injected {kind}"}})
        elif kind == "401":
            self._send(h, 401, {"error": {"message": "Incorrect API key provided"}})
        elif kind == "404":
            self._send(h, 404, {"error": {"message": "The model `fake-model` does not exist"}})
        elif kind == "slow":
            time.sleep(self.slow_s)  # past the client's timeout: it has given up by now
            self._send(h, 200, self._completion(req, answer_for(req.body)))
        elif kind == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "malformed":
            self._send_raw(h, 200, b'{"choices": [{"message": {"content": "cut')
        elif kind == "nochoices":
            self._send(h, 200, {"object": "chat.completion", "choices": []})
        elif kind == "nocontent":
            choice = ({"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}
                      if req.path.endswith("/chat/completions") else {"index": 0, "finish_reason": "stop"})
            self._send(h, 200, {"object": "chat.completion", "choices": [choice]})
        elif kind == "hang":  # accepted, read, never answered
            self.closing.wait(120)
            h.close_connection = True
        elif kind == "stream":  # a 200 whose body never ends: a byte every 50 ms, forever
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            while not self.closing.is_set():
                h.wfile.write(b"1\r\n \r\n")
                h.wfile.flush()
                time.sleep(0.05)
            h.close_connection = True
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown fault {kind!r}")

    @staticmethod
    def _completion(req: Request, text: str) -> dict[str, Any]:
        chat = req.path.endswith("/chat/completions")
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} if chat
                  else {"index": 0, "text": text, "finish_reason": "stop"})
        return {"object": "chat.completion", "model": "fake-model", "choices": [choice],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}

    def _deliver(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        text = answer_for(req.body)
        if self.pad and not is_proposal(req.text):
            text += "\n" + "." * self.pad  # the metrics read the first line: the score is unchanged
        data = json.dumps(self._completion(req, text)).encode()
        if self.hold_after is not None and req.n > self.hold_after:
            self.killed.wait(15)  # came after the request that kills: never answered
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.gate:
            if self.killed.is_set():
                h.close_connection = True
                return
            self._send_raw(h, 200, data)
            req.delivered = True

    def _send(self, h: BaseHTTPRequestHandler, code: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        self._send_raw(h, code, json.dumps(payload).encode(), headers)

    @staticmethod
    def _send_raw(h: BaseHTTPRequestHandler, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    # -- killing the engine -----------------------------------------------------------------------------------
    def kill(self, pid: int, db: Path | None = None, *, freeze: bool = True, mark: int = 0) -> None:
        """SIGKILL ``pid``. With ``freeze``, no answer is delivered from now on and, before the kill, every answer
        delivered since ``mark`` must reach the store's cache (``db``): then *delivered* equals *finished*."""
        with self.gate:
            self.killed.set()
            try:
                if freeze and db is not None:
                    wait_cached(db, self.delivered(mark))
            finally:  # kill even when the wait failed: the test then reports it, rather than hanging
                self.kills.append(pid)  # before the signal: whoever sees the death sees this too
                sigkill(pid)

    def kill_at_request(self, n: int, pid: int | Callable[[], int], db: Path, *,
                        where: Callable[[Request], bool] = lambda r: True, mark: int = 0) -> None:
        """Kill the engine (``pid``, or a function finding it) when the ``n``-th request matching ``where``
        arrives, with that request in flight: the matching requests before it are answered first and nothing
        after it is, so exactly ``n - 1`` of them are finished at the kill."""
        self._kill_target = (pid, db, mark)
        with self.lock:
            self._trigger = (n, where, [])

    def _kill_at(self, req: Request) -> None:
        pid, db, mark = self._kill_target
        assert self._trigger is not None
        earlier = [r for r in self._trigger[2] if r is not req]
        deadline = time.monotonic() + 10
        while not all(r.delivered for r in earlier) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.kill(pid() if callable(pid) else pid, db, mark=mark)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


# -- the store ---------------------------------------------------------------------------------------------------
def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(db), timeout=30)


def cached_ids(db: Path) -> set[tuple[str, Any]]:
    """(prompt SHA-256, seed) of every answer in the store's cache."""
    con = _connect(db)
    try:
        rows = con.execute("select prompt_sha256, params_json from cache").fetchall()
    finally:
        con.close()
    return {(sha, json.loads(params or "{}").get("seed")) for sha, params in rows}


def wait_cached(db: Path, reqs: list[Request], timeout: float = 15.0) -> None:
    want = {r.cache_id for r in reqs}
    deadline = time.monotonic() + timeout
    while True:
        missing = want - cached_ids(db) if want else set()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} answers delivered {timeout:g}s ago are still not in the cache")
        time.sleep(0.02)


def finished_keys(db: Path, reqs: list[Request]) -> set[str]:
    """The calls among ``reqs`` that are finished: answered and committed to the store's cache."""
    cached = cached_ids(db)
    return {r.key for r in reqs if r.delivered and r.cache_id in cached}


def check_integrity(db: Path) -> None:
    con = _connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def write_lock_holder(db: Path) -> Callable[[int], bool]:
    """A test of whether process ``pid`` holds the SQLite WAL write lock of ``db`` right now (a POSIX lock on
    byte 120 of the ``-shm`` file, read from /proc/locks: looking does not disturb the writer)."""
    inode = os.stat(f"{db}-shm").st_ino

    def holds(pid: int) -> bool:
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if "->" in parts:
                    continue  # a waiter, not a holder
                try:
                    kind, lock_pid, dev_inode, start, end = parts[1], int(parts[4]), parts[5], parts[6], parts[7]
                except (IndexError, ValueError):
                    continue
                if (kind == "POSIX" and parts[3] == "WRITE" and lock_pid == pid
                        and int(dev_inode.rsplit(":", 1)[1]) == inode
                        and int(start) <= 120 <= (10**18 if end == "EOF" else int(end))):
                    return True
        return False

    return holds


# -- processes ---------------------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and int(st[1]) == pid and st[0] not in ("Z", "X"):
                out.append(int(name))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def wait_gone(pids: Iterable[int], timeout: float = 20.0) -> list[int]:
    """Wait until none of ``pids`` runs; returns those still running after ``timeout``."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def sigkill(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL and wait until the process is really gone (not merely signalled)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if wait_gone([pid], timeout):
        raise AssertionError(f"process {pid} survived SIGKILL for {timeout:g}s")


def engine_env(home: Path) -> dict[str, str]:
    """The environment of an engine (or `iz`) process living in ``home``."""
    env = dict(os.environ)
    env["IZ_HOME"] = str(home)
    env["IZ_CONFIG"] = str(home / "config.toml")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def write_config(home: Path, url: str, *, timeout_s: float = 10.0, max_retries: int = 5,
                 generator_tokens: int = 8, extra: str = "") -> Path:
    """A configuration whose default endpoint is the fake at ``url`` (profile ``fake``), and whose generator
    writes short instructions (the reliability tests need instructions, not good ones)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(
        f'default_endpoint = "fake"\n\n[generator]\nmax_new_tokens = {generator_tokens}\n\n'
        f'[endpoints.fake]\nbase_url = "{url}"\nmodel = "fake-model"\ntimeout_s = {timeout_s}\n'
        f"max_retries = {max_retries}\n{extra}",
        encoding="utf-8",
    )
    return path
