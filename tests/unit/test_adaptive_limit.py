"""The adaptive in-flight limit (AIMD on HTTP 429): the class on its own, then through the real client on the wire.

The pure tests drive :class:`AdaptiveLimit` with explicit acquire / release and count what is in flight; the last
test runs the black-box client against the scripted endpoint of ``test_blackbox_faults`` and checks, on the
server's side, that a burst of 429s lowers how many requests arrive at once while every answer still comes back.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from test_blackbox_faults import FAST, Action, FakeEndpoint, profile

from engine.blackbox import BlackBox
from engine.blackbox.limits import AdaptiveLimit, Slot


async def _turns(n: int = 5) -> None:
    """Let the event loop run everything that is ready, a few rounds."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _rate_limited(limit: AdaptiveLimit, slot: Slot) -> None:
    slot.rate_limited()
    await limit.release(slot, ok=False)


async def _succeed(limit: AdaptiveLimit, times: int) -> None:
    for _ in range(times):
        await limit.release(await limit.acquire(), ok=True)


# -- the class on its own ------------------------------------------------------------------------------------
async def test_never_more_than_the_limit_in_flight() -> None:
    limit = AdaptiveLimit(3)
    in_flight = peak = done = 0

    async def request() -> None:
        nonlocal in_flight, peak, done
        async with limit.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await _turns(3)
            in_flight -= 1
        done += 1

    await asyncio.gather(*(request() for _ in range(20)))
    assert (peak, done, limit.in_flight, limit.limit) == (3, 20, 0, 3)


async def test_a_burst_of_429s_halves_the_limit_once() -> None:
    limit = AdaptiveLimit(32)
    burst = [await limit.acquire() for _ in range(32)]
    assert limit.in_flight == 32
    for slot in burst:  # all sent at the old limit: only the first 429 counts
        await _rate_limited(limit, slot)
    assert (limit.limit, limit.in_flight) == (16, 0)

    late = await limit.acquire()  # sent after the decrease: its 429 is news, and halves again
    await _rate_limited(limit, late)
    assert limit.limit == 8
    for _ in range(10):
        await _rate_limited(limit, await limit.acquire())
    assert limit.limit == 1  # floor


async def test_successes_grow_the_limit_back_by_one_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(8)
    old = await limit.acquire()  # a request still in flight from before the decrease
    await _rate_limited(limit, await limit.acquire())
    assert limit.limit == 4

    await _succeed(limit, 3)
    assert limit.limit == 4
    await _rate_limited(limit, old)  # a stale 429 leaves the limit alone but restarts the count of successes
    assert limit.limit == 4
    await _succeed(limit, 3)
    assert limit.limit == 4
    await _succeed(limit, 1)  # 4 in a row at limit 4
    assert limit.limit == 5
    await _succeed(limit, 4)
    assert limit.limit == 5
    await _succeed(limit, 1)
    assert limit.limit == 6
    await _succeed(limit, 6 + 7 + 100)
    assert limit.limit == 8  # the ceiling, never beyond


async def test_waiters_wake_when_the_limit_grows() -> None:
    limit = AdaptiveLimit(2)
    a, b = await limit.acquire(), await limit.acquire()
    await _rate_limited(limit, a)
    assert (limit.limit, limit.in_flight) == (1, 1)

    waiters = [asyncio.create_task(limit.acquire()) for _ in range(2)]
    await _turns()
    assert not any(w.done() for w in waiters)

    # b's success frees one slot and (1 success at limit 1) grows the limit to 2: both waiters get in, not just one
    await limit.release(b, ok=True)
    await _turns()
    assert all(w.done() for w in waiters)
    assert (limit.limit, limit.in_flight) == (2, 2)


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    limit = AdaptiveLimit(1)
    held = await limit.acquire()
    first, second = (asyncio.create_task(limit.acquire()) for _ in range(2))
    await _turns()

    await limit.release(held, ok=True)  # wakes `first` only (one free slot)...
    first.cancel()  # ...which is cancelled before it runs
    await _turns()
    assert first.cancelled()
    assert second.done() and limit.in_flight == 1


async def test_failures_other_than_429_neither_shrink_nor_grow() -> None:
    limit = AdaptiveLimit(4)
    await _rate_limited(limit, await limit.acquire())
    with pytest.raises(RuntimeError):
        async with limit.slot():
            raise RuntimeError("server error")
    await _succeed(limit, 1)
    assert (limit.limit, limit.in_flight) == (2, 0)
    await _succeed(limit, 1)
    assert limit.limit == 3  # the failure did not break the run of successes either


# -- through the real client, on the wire ---------------------------------------------------------------------
async def test_429s_lower_the_requests_the_endpoint_sees_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.blackbox.limits")
    server = FakeEndpoint()
    server.server.socket.listen(64)  # socketserver's backlog of 5 could delay one of 8 simultaneous connects by 1 s
    server.default = Action("sleep", seconds=0.2)
    try:
        async with BlackBox(profile(server.url, concurrency=8), retry_wait_scale=FAST) as bb:
            before = await asyncio.gather(*(bb.complete(f"before {i}") for i in range(8)))
            assert server.max_in_flight == 8 and bb._concurrency.limit == 8

            server.script = [Action("status", 429) for _ in range(8)]  # every request of the next batch refused once
            burst = await asyncio.gather(*(bb.complete(f"burst {i}") for i in range(8)))
            assert bb._concurrency.limit < 8

            with server.lock:
                server.max_in_flight = 0
            after = await asyncio.gather(*(bb.complete(f"after {i}") for i in range(8)))
            limit_now = bb._concurrency.limit  # only grew during the last batch: it bounds what was in flight
    finally:
        server.close()

    assert [c.text for c in before + burst + after] == ["hello"] * 24
    assert server.count == 8 + 8 * 2 + 8  # the burst's requests were each sent twice
    assert server.max_in_flight <= limit_now < 8
    assert "rate limited; at most 4 requests in flight now" in caplog.text


def test_the_embedded_server_gets_at_most_a_few_in_flight() -> None:
    """It answers one request at a time; 32 queued answers would wait past timeout_s, so the ceiling is capped."""
    from engine.blackbox.client import EMBEDDED_IN_FLIGHT, BlackBox
    from engine.config import EndpointProfile

    embedded = BlackBox(EndpointProfile(model="smollm2-135m", concurrency=32), base_url="http://127.0.0.1:9/v1")
    remote = BlackBox(EndpointProfile(base_url="http://127.0.0.1:9/v1", model="m"))
    assert embedded._concurrency.ceiling == EMBEDDED_IN_FLIGHT < 32
    assert remote._concurrency.ceiling == 32
