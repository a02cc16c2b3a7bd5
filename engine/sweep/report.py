"""A sweep's results as a method x task table: mean and spread of the held-out test score over seeds.

Pure functions over ``History.sweep_cells`` rows, shared by `iz sweep`, the TUI's sweep screen and the quality
benchmark, so all three show the same numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stat:
    """Test scores of one (method, task) over the seeds that finished."""

    scores: list[float] = field(default_factory=list)
    cells: int = 0  # cells in the grid, finished or not

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (None with fewer than two)."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else None

    def text(self) -> str:
        if self.mean is None:
            return "—"
        spread = f" ±{self.sd:.2f}" if self.sd is not None else ""
        missing = f" ({self.n}/{self.cells})" if self.n < self.cells else ""
        return f"{self.mean:.2f}{spread}{missing}"


@dataclass
class SweepTable:
    methods: list[str]
    tasks: list[str]
    stats: dict[tuple[str, str], Stat]  # (method, task) -> Stat

    def stat(self, method: str, task: str) -> Stat:
        return self.stats.get((method, task), Stat())

    def method_mean(self, method: str) -> float | None:
        """The mean over tasks of the per-task means (a task with no finished seed is left out)."""
        means = [m for t in self.tasks if (m := self.stat(method, t).mean) is not None]
        return statistics.fmean(means) if means else None

    def best_method(self, task: str) -> str | None:
        scored = [(m, s) for m in self.methods if (s := self.stat(m, task).mean) is not None]
        return max(scored, key=lambda p: p[1])[0] if scored else None


def sweep_table(cells: Sequence[dict[str, Any]]) -> SweepTable:
    """Group cells (``History.sweep_cells`` rows: task, method, status, test_score) by method and task."""
    methods = list(dict.fromkeys(c["method"] for c in cells))
    tasks = list(dict.fromkeys(c["task"] for c in cells))
    stats: dict[tuple[str, str], Stat] = {}
    for c in cells:
        st = stats.setdefault((c["method"], c["task"]), Stat())
        st.cells += 1
        if c["status"] == "finished" and c.get("test_score") is not None:
            st.scores.append(float(c["test_score"]))
    return SweepTable(methods, tasks, stats)


def render_text(table: SweepTable) -> list[list[str]]:
    """Rows for a plain or rich table: a header, one row per method, then the mean over tasks."""
    rows = [["method", *table.tasks, "mean"]]
    for m in table.methods:
        mean = table.method_mean(m)
        rows.append([m, *(table.stat(m, t).text() for t in table.tasks), "—" if mean is None else f"{mean:.2f}"])
    return rows


def counts(cells: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Cells by status, for a one-line summary ("6 finished · 1 failed · 1 pending")."""
    out: dict[str, int] = {}
    for c in cells:
        out[c["status"]] = out.get(c["status"], 0) + 1
    return out
