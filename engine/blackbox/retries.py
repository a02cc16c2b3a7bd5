"""When a black-box request is tried again, and how long to wait first: the transient failures (429, 5xx, timeouts,
dropped connections, garbage bodies), a server's ``Retry-After``, and exponential backoff with jitter otherwise.
The retrying itself is tenacity's; :class:`engine.blackbox.client.BlackBox` wires it up."""

from __future__ import annotations

import datetime as _dt
import email.utils

from tenacity import RetryCallState
from tenacity.wait import wait_base

#: Backoff between retries without a Retry-After: random in [0, min(MAX, BASE * 2**attempt)] seconds.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 20.0
#: A Retry-After longer than this is cut to it, so one odd header cannot stall a run for an hour.
RETRY_AFTER_CAP_S = 120.0

class _Transient(Exception):
    """A failure worth retrying (429, 5xx, timeout, dropped connection, garbage body)."""

    def __init__(self, what: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.kind = kind  # rate_limit | server | timeout | connect | network | garbage
        self.retry_after = retry_after


class _WaitRetryAfter(wait_base):
    """Wait what the server asked for (``Retry-After``) when it asked, else exponential backoff with jitter."""

    def __init__(self, fallback: wait_base, cap: float = RETRY_AFTER_CAP_S) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return self.fallback(retry_state)


def parse_retry_after(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds (``"3"``) or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    now = now or _dt.datetime.now(_dt.UTC)
    return max(0.0, (when - now).total_seconds())
