"""Small formatting helpers every screen uses, so numbers and errors read the same everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

_TRACE_MARKERS = ("Traceback (most recent call last)", '  File "', "    ")


def fmt_score(value: Any) -> str:
    """A score as three decimals, or a dash when there is none yet."""
    return "-" if value is None else f"{float(value):.3f}"


def short(text: str | None, width: int) -> str:
    """One line, cut to ``width`` characters with an ellipsis."""
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def paid_calls(calls: int, saved: int) -> str:
    """A run's paid black-box calls and those the cache and dedup saved, worded once for every place showing them."""
    return f"{calls} call{'s' if calls != 1 else ''} · {saved} saved by cache"


def friendly_error(problem: str, fix: str | None) -> tuple[str, str]:
    """The problem and what to do, for people: first line of the problem plus its last meaningful log line.

    A dead engine's problem carries the tail of its log, which may hold a traceback; we never show one, only
    the final ``SomeError: message`` line that says what went wrong, and point at the log for the rest.
    """
    lines = [ln for ln in (problem or "engine error").splitlines() if ln.strip()]
    head = lines[0] if lines else "engine error"
    tail = [ln.strip() for ln in lines[1:] if not ln.startswith(_TRACE_MARKERS[:2]) and ln.strip()
            and not ln.strip().startswith(("File ", "^", "~", "Traceback"))]
    if tail:
        head = head.removesuffix(":").removesuffix("; its last log lines").removesuffix(" its last log lines")
        head = f"{head} (last log line: {tail[-1]})"
    return head, fix or "see the engine log (IZ_HOME/logs/engine.log) and try again"


def best_so_far(scores: Iterable[float | None]) -> list[float]:
    """The running maximum of dev scores, one point per evaluation (the y of the best-so-far plot)."""
    out: list[float] = []
    best = float("-inf")
    for s in scores:
        if s is not None and s > best:
            best = s
        out.append(best if best != float("-inf") else 0.0)
    return out


def run_label(run: dict[str, Any]) -> str:
    """How a run is named in pickers: id, task, method, best dev score."""
    return f"#{run['id']} {run['task']} · {run['method']} · dev {fmt_score(run.get('best_dev_score'))}"


def parse_float(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None


def dedupe_top(cands: Sequence[dict[str, Any]], k: int) -> list[int]:
    """The ids of the k best candidates by dev score, one per distinct instruction (reranking twins is waste)."""
    seen: set[str] = set()
    ids: list[int] = []
    for c in sorted(cands, key=lambda c: (-(c.get("dev_score") or 0.0), c["id"])):
        if c["instruction"] not in seen:
            seen.add(c["instruction"])
            ids.append(c["id"])
    return ids[:k]
