"""What the user did last, read cheaply for the first screen: the task of the newest run.

Why not :class:`engine.store.History`: the TUI's first screen must be up in a fraction of a second, and the
store's module imports sqlite-utils (and numpy through it, about 0.1 s). One read-only query with the standard
library's sqlite3 costs a millisecond; any problem (no database yet, a locked or foreign file) just means there is
no last task, never an error on the first screen.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

#: The built-in task the first screen offers when the user has run nothing yet: one where the default quick run
#: beats a generic instruction (BENCHMARKS.md, "The first run"), so the first thing a new user sees is the method
#: finding a better instruction.
FIRST_TASK = "antonyms"


def last_task(db: Path) -> str | None:
    """The task of the newest run in the history at ``db``, or None (no file, no runs, unreadable)."""
    if not db.is_file():
        return None
    with contextlib.suppress(sqlite3.Error), contextlib.closing(
            sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)) as conn:
        row = conn.execute("SELECT task FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None
    return None
