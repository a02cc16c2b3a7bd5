"""Client-side limits for a black-box endpoint: how many requests at once, and how many per minute.

Why our own small limiters rather than a dependency: the need is one evenly spaced rate and one adaptive in-flight
limit per endpoint inside one asyncio loop, a few dozen lines; spacing requests evenly (instead of allowing a full
minute's burst) keeps a provider's per-second limits happy too, so 429s stay rare and the retries are the exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


class RateLimiter:
    """At most ``per_minute`` acquisitions per minute, spaced evenly (one every ``60 / per_minute`` seconds).

    Every HTTP request (retries included) acquires once, because providers count retries against the limit too.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.interval = 60.0 / per_minute
        self._next = 0.0  # monotonic time at which the next request may start
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            await asyncio.sleep(delay)

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass
class Slot:
    """One request's place in an :class:`AdaptiveLimit`: the window it started in, and whether it was rate-limited."""

    window: int
    was_rate_limited: bool = False

    def rate_limited(self) -> None:
        """Mark this request as answered with HTTP 429 (the limit shrinks when the slot is released)."""
        self.was_rate_limited = True


class AdaptiveLimit:
    """At most ``limit`` requests in flight, ``limit`` adapting AIMD style between 1 and ``ceiling``.

    Why: a local or self-hosted server finishes a dev set in one round when every example is asked at once, so the
    profile's ``concurrency`` (the ceiling) defaults high; a paid API instead answers HTTP 429 when too many
    requests are in flight. So the limit starts at the ceiling, halves (floor 1) on a 429, and grows back by one
    after ``limit`` successes in a row (additive increase), up to the ceiling again.

    A burst of 429s shrinks it once, not once per 429: each decrease opens a new *window*, and a 429 from a request
    started in an earlier window (before the last decrease) is ignored, since that request was sent at the old
    limit. Any 429 restarts the count of successes. Waiters sleep on an :class:`asyncio.Condition` and are woken
    when a slot frees or the limit grows.

    Use ``async with limit.slot() as s:`` around one request and call ``s.rate_limited()`` on a 429; leaving the
    block normally counts as a success, leaving it with any other exception counts as neither.
    """

    def __init__(self, ceiling: int, name: str = "endpoint") -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.name = name
        self.limit = ceiling
        self.in_flight = 0
        self._window = 0  # bumped at each decrease
        self._successes = 0  # in a row, since the last 429 or increase
        self._cond = asyncio.Condition()

    def _has_room(self) -> bool:
        return self.in_flight < self.limit

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots (the lock must be held)."""
        if self.limit > self.in_flight:
            self._cond.notify(self.limit - self.in_flight)

    async def acquire(self) -> Slot:
        """Wait for a free slot and take it."""
        async with self._cond:
            try:
                await self._cond.wait_for(self._has_room)
            except asyncio.CancelledError:
                self._wake()  # a wake-up this waiter got (and now drops) goes to the next one
                raise
            self.in_flight += 1
            return Slot(self._window)

    async def release(self, slot: Slot, *, ok: bool) -> None:
        """Give the slot back; ``ok``: the request succeeded (``slot.rate_limited()``: it got a 429)."""
        async with self._cond:
            self.in_flight -= 1
            if slot.was_rate_limited:
                self._on_rate_limit(slot.window)
            elif ok:
                self._on_success()
            self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """One request in flight for the duration of the block."""
        slot = await self.acquire()
        ok = False
        try:
            yield slot
            ok = True
        finally:
            await self.release(slot, ok=ok)

    def _on_rate_limit(self, window: int) -> None:
        self._successes = 0
        if window != self._window or self.limit == 1:
            return  # sent before the last decrease (already answered for), or nothing left to shrink
        self._window += 1
        self.limit = max(1, self.limit // 2)
        log.info("%s: rate limited; at most %d requests in flight now", self.name, self.limit)

    def _on_success(self) -> None:
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            log.info("%s: no rate limit lately; at most %d requests in flight now", self.name, self.limit)
