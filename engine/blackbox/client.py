"""The black box: an async client for any OpenAI-compatible endpoint, with a cache, limits and retries.

Why it is shaped like this:

- InstructZero pays the black box for every dev example of every candidate, so a response is never bought twice:
  every successful answer goes into the history's ``cache`` table, keyed by what determines it (endpoint identity,
  model, API, temperature, max_tokens, stop, prompt; plus a request's own overrides of those, its seed or its system
  message when :meth:`BlackBox.complete` is given any, as the APE proposer does). A hit sends no HTTP request at
  all. Identical prompts asked concurrently are joined to one request too. Responses at temperature > 0 are cached
  as well: the search wants a stable score for a given instruction, and the caller who wants fresh samples can use
  another profile or history, or pass another ``seed``.
- Endpoints fail in ordinary ways (429 rate limits, 5xx, timeouts, dropped connections, a proxy answering garbage).
  Those are retried through tenacity with exponential backoff and jitter, honouring ``Retry-After``. Failures that
  a retry cannot fix (a bad key, a wrong model or URL, a bad request) stop at once with an :class:`EndpointError`
  saying what to change.
- The API key is read from the environment variable the profile names, at request time, and goes only into the
  ``Authorization`` header: never into a message, a log line or a cache row. Errors name the variable, never the key.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from engine.blackbox.limits import AdaptiveLimit, RateLimiter
from engine.blackbox.retries import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    _Transient,
    _WaitRetryAfter,
    parse_retry_after,
)
from engine.errors import EndpointError
from engine.usage import estimate_tokens

if TYPE_CHECKING:
    from engine.config import EndpointProfile
    from engine.models.embedded import EmbeddedServer
    from engine.store.history import History

log = logging.getLogger(__name__)

#: Requests in flight to the embedded server at most (it is serial; see BlackBox.__init__).
EMBEDDED_IN_FLIGHT = 8

#: How much of a server's error message goes into our message.
SERVER_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Completion:
    """One answer of the black box. On a cache hit ``latency_s`` is the (near zero) time the look-up took, while
    the token counts are those of the original request, so callers can still see what the answer cost once."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cache_hit: bool = False


class BlackBox:
    """One OpenAI-compatible endpoint, for one engine process (one event loop).

    ``base_url`` overrides the profile's URL (the engine passes the embedded server's URL); ``cache_identity``
    replaces the URL in cache keys (``"embedded:<gguf name>"`` for the embedded server, whose port changes every
    process). For an embedded profile given no ``base_url``, the process-wide :class:`EmbeddedServer` is started on
    the first request that misses the cache, so a run served fully from the cache never starts it.
    ``retry_wait_scale`` scales the backoff (not ``Retry-After``); tests make it tiny.
    """

    def __init__(
        self,
        profile: EndpointProfile,
        history: History | None = None,
        *,
        base_url: str | None = None,
        cache_identity: str | None = None,
        retry_wait_scale: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.profile = profile
        self.history = history
        self._server: EmbeddedServer | None = None
        if base_url is None and profile.embedded:
            from engine.models.embedded import server_for

            self._server = server_for(profile.model)
            cache_identity = cache_identity or self._server.identity
        elif base_url is None:
            base_url = profile.base_url
        self._base_url = base_url.rstrip("/") if base_url else None
        self.identity = cache_identity or self._base_url or profile.base_url
        self.retry_wait_scale = retry_wait_scale
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # At most profile.concurrency requests in flight, fewer for a while after an HTTP 429 (see AdaptiveLimit).
        # The embedded llama.cpp server answers one request at a time: more in flight only wait in its queue, where
        # the wait counts against timeout_s (32 queued 2 s answers would time out), so it gets at most a few.
        ceiling = min(profile.concurrency, EMBEDDED_IN_FLIGHT) if profile.embedded else profile.concurrency
        self._concurrency = AdaptiveLimit(ceiling, name=self.identity)
        self._limiter = RateLimiter(profile.requests_per_minute) if profile.requests_per_minute else None
        self._inflight: dict[str, asyncio.Future[Completion]] = {}
        self.requests_sent = 0  # HTTP requests actually sent, retries included
        self.calls = 0  # complete() calls that needed the network
        self.cache_hits = 0  # complete() calls answered by the cache (or by an identical request in flight)

    # -- public -------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The URL requests go to (for an embedded profile: known once the server has started)."""
        if self._base_url is None and self._server is not None and self._server.base_url:
            self._base_url = self._server.base_url
        return self._base_url or self.profile.base_url

    def cache_key(self, prompt: str, overrides: dict[str, Any] | None = None) -> str:
        p = self.profile
        fields: dict[str, Any] = {
            "identity": self.identity,
            "model": p.model,
            "api": p.api,
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "stop": list(p.stop),
            "prompt": prompt,
        }
        # Per-request overrides replace the profile's values; "seed" and "system" appear only when given, so a key
        # made without overrides (or with the profile's own values) is the same as before they existed.
        fields.update(overrides or {})
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    async def complete(
        self,
        prompt: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
    ) -> Completion:
        """The endpoint's answer to ``prompt``: from the cache when known, else from one (retried) request.

        The keyword arguments override the profile for this request only (``seed`` is sent as the OpenAI ``seed``
        field, which llama.cpp's server honours; ``system`` becomes a system message on a chat endpoint and is
        ignored by a completions endpoint). Each one given is part of the cache key.
        """
        t0 = time.perf_counter()
        overrides = _overrides(temperature=temperature, max_tokens=max_tokens, stop=stop, seed=seed, system=system)
        key = self.cache_key(prompt, overrides)
        row = self.history.cache_get(key) if self.history is not None else None
        if row is not None:
            self.cache_hits += 1
            return Completion(
                text=row["response"],
                prompt_tokens=int(row.get("prompt_tokens") or 0),
                completion_tokens=int(row.get("completion_tokens") or 0),
                latency_s=time.perf_counter() - t0,
                cache_hit=True,
            )
        while (pending := self._inflight.get(key)) is not None:
            # The same prompt is being asked right now: share that answer instead of paying twice.
            try:
                done = await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled() and not _current_task_cancelling():
                    continue  # the first asker was cancelled, not us: ask ourselves
                raise
            self.cache_hits += 1
            return Completion(done.text, done.prompt_tokens, done.completion_tokens,
                              time.perf_counter() - t0, cache_hit=True)
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            self.calls += 1
            result = await self._fetch(prompt, overrides)
            if self.history is not None:
                self._store(key, prompt, result, overrides)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark it retrieved: there may be nobody else waiting
            raise
        except BaseException:
            fut.cancel()
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> BlackBox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------------------------------------
    def _store(self, key: str, prompt: str, c: Completion, overrides: dict[str, Any] | None = None) -> None:
        p = self.profile
        params = {"api": p.api, "temperature": p.temperature, "max_tokens": p.max_tokens, "stop": list(p.stop),
                  **(overrides or {})}
        self.history.cache_put(  # type: ignore[union-attr]
            {
                "key": key,
                "base_url": self.identity,
                "model": p.model,
                "params": params,
                "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
                "response": c.text,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
            }
        )

    async def _ensure_ready(self) -> httpx.AsyncClient:
        if self._base_url is None and self._server is not None:
            self._base_url = await asyncio.to_thread(self._server.start)
        if self._client is None:
            loopback = httpx.URL(self.base_url).host in ("127.0.0.1", "localhost", "::1")
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.profile.timeout_s),
                limits=httpx.Limits(max_connections=self.profile.concurrency),
                transport=self._transport,
                trust_env=not loopback,  # a proxy from the environment must never catch a local server
            )
        return self._client

    def _body(self, prompt: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        p = self.profile
        o = overrides or {}
        body: dict[str, Any] = {
            "model": p.model,
            "temperature": o.get("temperature", p.temperature),
            "max_tokens": o.get("max_tokens", p.max_tokens),
        }
        stop = o.get("stop", p.stop)
        if stop:
            body["stop"] = list(stop)
        if "seed" in o:
            body["seed"] = o["seed"]
        if p.api == "chat":
            system = [{"role": "system", "content": o["system"]}] if o.get("system") else []
            body["messages"] = [*system, {"role": "user", "content": prompt}]
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    def _headers(self) -> dict[str, str]:
        var = self.profile.api_key_env
        if not var:
            return {}
        key = os.environ.get(var)
        if not key:
            raise EndpointError(
                f"the API key variable {var} is not set (needed by {self.base_url})",
                f"export {var}=<your key> before starting, or change api_key_env in the endpoint profile",
            )
        return {"Authorization": f"Bearer {key}"}

    async def _fetch(self, prompt: str, overrides: dict[str, Any] | None = None) -> Completion:
        client = await self._ensure_ready()
        path, body = self._body(prompt, overrides)
        headers = self._headers()
        url = self.base_url + path
        attempts = self.profile.max_retries + 1
        scale = self.retry_wait_scale
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=_WaitRetryAfter(wait_random_exponential(multiplier=BACKOFF_BASE_S * scale, max=BACKOFF_MAX_S * scale)),
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return await retrying(self._attempt, client, url, body, headers, prompt)
        except _Transient as exc:
            raise self._gave_up(exc, attempts) from None

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; retry %d in %.2fs", self.base_url, getattr(exc, "what", exc), state.attempt_number, wait)

    async def _attempt(
        self, client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], prompt: str
    ) -> Completion:
        # One slot per attempt, not per request: a request sleeping on its backoff leaves its slot to others.
        async with self._concurrency.slot() as slot:
            if self._limiter is not None:
                await self._limiter.acquire()
            self.requests_sent += 1
            t0 = time.perf_counter()
            try:
                # httpx's timeout bounds each wait (connect, each read); this bounds the whole answer, so a server
                # that trickles bytes forever cannot hold a run.
                async with asyncio.timeout(self.profile.timeout_s):
                    resp = await client.post(url, json=body, headers=headers)
            except asyncio.CancelledError:
                if (dropped := DROPPED.get()) is not None:
                    dropped.append(1)
                raise
            except (httpx.TimeoutException, TimeoutError):
                raise _Transient(f"no answer within {self.profile.timeout_s:g}s", kind="timeout") from None
            except httpx.ConnectError as exc:
                raise _Transient(f"cannot connect ({_short(exc)})", kind="connect") from None
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise _Transient(f"connection dropped ({_short(exc)})", kind="network") from None
            latency = time.perf_counter() - t0
            if resp.status_code == 429:
                slot.rate_limited()  # _check_status raises the retryable error; this shrinks the limit
            self._check_status(resp)
            return self._parse(resp, prompt, latency)

    def _check_status(self, resp: httpx.Response) -> None:
        code = resp.status_code
        if code < 400:
            return
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if code == 429:
            raise _Transient("rate limited (HTTP 429)", kind="rate_limit", retry_after=retry_after)
        if code >= 500 or code == 408:
            raise _Transient(f"server error HTTP {code}: {self._server_message(resp)}", kind="server",
                             retry_after=retry_after)
        var = self.profile.api_key_env
        if code in (401, 403):
            where = f"variable {var}" if var else "no api_key_env is set in the profile"
            raise EndpointError(
                f"bad or missing API key for {self.base_url} ({where}); the server answered HTTP {code}",
                f"check the key in ${var}" if var else
                "set api_key_env in the endpoint profile to the NAME of the variable holding your key",
            )
        if code == 404:
            raise EndpointError(
                f"model {self.profile.model!r} or URL not found at {self.base_url} (HTTP 404 for "
                f"{resp.request.url.path}): {self._server_message(resp)}",
                "check the model name (GET <base_url>/models lists them) and that base_url ends with the API "
                "prefix, usually /v1",
            )
        raise EndpointError(
            f"{self.base_url} refused the request (HTTP {code}): {self._server_message(resp)}",
            "check the endpoint profile (model, max_tokens, stop, api = chat or completions)",
        )

    def _server_message(self, resp: httpx.Response) -> str:
        """The server's own words about the error, short, with our key scrubbed in case the server echoed it."""
        try:
            data = resp.json()
        except (ValueError, UnicodeDecodeError):
            data = None
        msg: Any = None
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data.get("message")))
            msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg) if msg else (resp.text or resp.reason_phrase or "")
        text = self._scrub(" ".join(text.split()))
        return text[:SERVER_MESSAGE_CHARS] + ("..." if len(text) > SERVER_MESSAGE_CHARS else "") or "(no message)"

    def _scrub(self, text: str) -> str:
        """``text`` with our API key replaced, in case the server echoed it (some do, in error bodies)."""
        var = self.profile.api_key_env
        key = os.environ.get(var) if var else None
        return text.replace(key, "<key hidden>") if key else text

    def _parse(self, resp: httpx.Response, prompt: str, latency: float) -> Completion:
        try:
            data = resp.json()
        except (ValueError, UnicodeDecodeError):
            raise _Transient(f"the answer was not JSON ({self._scrub(resp.text)[:80]!r})", kind="garbage") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Transient("the answer had no choices", kind="garbage")
        first = choices[0]
        message = first.get("message") if self.profile.api == "chat" else None
        if self.profile.api == "chat":
            text = message.get("content") if isinstance(message, dict) else None
        else:
            text = first.get("text")
        if text is None and isinstance(message, dict) and isinstance(message.get("refusal"), str):
            text = ""  # the model declined: a real answer (it scores nothing), not a broken reply
        if text is None:  # no text at all, not even "": a broken reply, which asking again usually fixes
            raise _Transient("the answer had no content", kind="garbage")
        if not isinstance(text, str):
            raise _Transient("the answer's text was not a string", kind="garbage")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        return Completion(
            text=text,
            prompt_tokens=int(prompt_tokens) if isinstance(prompt_tokens, int) else estimate_tokens(prompt),
            completion_tokens=int(completion_tokens) if isinstance(completion_tokens, int) else estimate_tokens(text),
            latency_s=latency,
        )

    def _gave_up(self, exc: _Transient, attempts: int) -> EndpointError:
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        problem, fix = _GAVE_UP.get(exc.kind, _GAVE_UP["server"])
        return EndpointError(problem.format(url=self.base_url, tries=tries, what=exc.what), fix)


#: What to say when retries ran out, by kind of failure: (problem, fix).
_GAVE_UP: dict[str, tuple[str, str]] = {
    "connect": ("cannot reach {url} {tries}: {what}",
                "check the server is running and the URL is right (including the /v1 prefix)"),
    "timeout": ("{url} did not answer {tries}: {what}",
                "check the server is up and not overloaded, or raise timeout_s / lower concurrency in the profile"),
    "rate_limit": ("{url} kept rate-limiting {tries}",
                   "lower concurrency or set requests_per_minute in the endpoint profile, or raise max_retries"),
    "garbage": ("{url} gave invalid answers {tries}: {what}",
                "check base_url points at an OpenAI-compatible API (it usually ends with /v1) and api = chat or "
                "completions matches what the server offers"),
    "server": ("{url} failed {tries}: {what}", "the server is failing; check its logs, or try again later"),
}


#: Requests already sent when their caller was cancelled: the endpoint may bill them, and their answers are lost.
#: A caller that cancels scoring sets a list here (in its own task's context) and counts the entries afterwards.
DROPPED: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("iz_dropped_requests", default=None)


async def all_answers(requests: Iterable[Awaitable[Completion]]) -> list[Completion]:
    """Every answer, in order, or none: if one request fails for good the others are cancelled (and awaited, so
    nothing is left running) and the error is raised. A partial batch would be a wrong score or a short proposal,
    and the cache keeps what was already paid for, so asking again costs only what is missing."""
    pending = [asyncio.ensure_future(r) for r in requests]
    try:
        return list(await asyncio.gather(*pending))
    except BaseException:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise


def _overrides(**given: Any) -> dict[str, Any]:
    """The per-request overrides actually given (None = the profile's value), normalised for the cache key."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name == "temperature":
            value = float(value)
        elif name in ("max_tokens", "seed"):
            value = int(value)
        elif name == "stop":
            value = [str(v) for v in value]
        out[name] = value
    return out


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]
