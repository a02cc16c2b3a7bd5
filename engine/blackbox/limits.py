"""Client-side limits for a black-box endpoint: how many requests at once, and how many per minute.

Why our own small limiter rather than a dependency: the need is one evenly spaced rate per endpoint inside one
asyncio loop, which is a dozen lines; spacing requests evenly (instead of allowing a full minute's burst) keeps a
provider's per-second limits happy too, so 429s stay rare and the retries are the exception.
"""

from __future__ import annotations

import asyncio
import time


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
