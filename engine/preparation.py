"""Progress of slow one-time work (preparing a model) as status lines that keep moving.

Why: the first load of a GGUF generator converts its tokenizer and dequantises its token embeddings (about a
minute for Qwen2.5-Coder-1.5B on 2 cores) and the work itself cannot report through the engine's event stream:
it runs in a worker thread, and events are written by the event loop. So the work only records where it is
(:class:`Preparation`, called from the thread), and :func:`run_prepared` reads that record once a second on the
loop and emits it with the time spent so far. A front end therefore sees the status change at least every second
("preparing generator qwen2.5-coder-1.5b · step 3/5 · 12 s · dequantising the embeddings (once) 40%"), never a line
that looks stalled.
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
        """The status line, what matters first (a narrow terminal cuts the end): what, ``step i/n``, the seconds
        so far, the stage and its share done."""
        with self._lock:
            stage, step, steps, fraction = self._state
        where = f"step {step}/{steps} · " if steps else ""
        done = f" {fraction:.0%}" if fraction is not None else ""
        return f"{self.what} · {where}{elapsed:.0f} s · {stage}{done}"


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
