"""Progress of slow one-time work (preparing a model) as status lines that keep moving.

Why: the first load of a GGUF generator converts its tokenizer and dequantises its token embeddings (about a
minute for Qwen2.5-Coder-1.5B on 2 cores) and the work itself cannot report through the engine's event stream:
it runs in a worker thread, and events are written by the event loop. So the work only records where it is
(:class:`Preparation`, called from the thread), and :func:`run_prepared` reads that record once a second on the
loop and emits it with the time spent so far. A front end therefore sees the status change at least every second
("preparing the generator qwen2.5-coder-1.5b: dequantising the token embeddings, step 3 of 5, 40% · 12 s"), never a
line that looks stalled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Preparation", "run_prepared"]

T = TypeVar("T")


class Preparation:
    """Where a preparation is: its stage, the step number among all steps, and a fraction of the stage if known.

    Called from the worker thread (``prep(stage, step, steps, fraction)``); read from the loop (:meth:`text`).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = threading.Lock()
        self._state: tuple[str, int, int, float | None] = ("starting", 0, 0, None)

    def __call__(self, stage: str, step: int = 0, steps: int = 0, fraction: float | None = None) -> None:
        with self._lock:
            self._state = (stage, int(step), int(steps), None if fraction is None else min(max(fraction, 0.0), 1.0))

    def text(self, elapsed: float) -> str:
        """The status line: what, the stage, ``step i of n``, the stage's share done, the seconds so far."""
        with self._lock:
            stage, step, steps, fraction = self._state
        where = f"{stage}, step {step} of {steps}" if steps else stage
        if fraction is not None:
            where += f", {fraction:.0%}"
        return f"{self.what}: {where} · {elapsed:.0f} s"


async def run_prepared(work: Callable[[Preparation], T], prep: Preparation, show: Callable[[str], None],
                       interval: float = 1.0) -> T:
    """Run ``work(prep)`` in a thread; meanwhile call ``show`` with :meth:`Preparation.text` every ``interval``
    seconds (and at once), on the loop. Returns what ``work`` returns; its exception propagates."""
    start = time.monotonic()
    task = asyncio.ensure_future(asyncio.to_thread(work, prep))
    shown = None
    while True:
        text = prep.text(time.monotonic() - start)
        if text != shown:
            show(text)
            shown = text
        done, _ = await asyncio.wait({task}, timeout=interval)
        if done:
            return task.result()
