"""Drawing the demo, dev and test splits of a task, deterministically by seed.

Demos are shown to the instruction generator, dev examples score candidate instructions during the search, and test
examples give the final, held-out score. The three are disjoint, so a test score is never measured on examples the
search saw. When a task is smaller than asked, the test split shrinks first (it only reports), then dev; the
shrinkage is described in ``Splits.notes`` so front ends can say what was actually used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.errors import TaskError
from engine.tasks.model import Example, Task


@dataclass
class Splits:
    demos: list[Example]
    dev: list[Example]
    test: list[Example]
    notes: list[str] = field(default_factory=list)


def make_splits(task: Task, *, n_demos: int, n_dev: int, n_test: int, seed: int) -> Splits:
    """Shuffle the example indices with ``random.Random(seed)`` and cut demos, dev, test in that order."""
    for label, value, least in (("demos", n_demos, 0), ("dev", n_dev, 1), ("test", n_test, 0)):
        if not isinstance(value, int) or value < least:
            raise TaskError(f"{label} size must be a whole number >= {least}, got {value!r}",
                            f"set n_{label} to {least} or more")
    total = len(task.examples)
    if total < n_demos + 1:
        raise TaskError(
            f"task {task.name} has {total} example(s): not enough for {n_demos} demos + at least 1 dev example "
            f"(asked for {n_demos} demos, {n_dev} dev, {n_test} test)",
            f"ask for fewer demos (n_demos <= {max(total - 1, 0)}; dev and test shrink by themselves), "
            "or add examples to the task",
        )
    notes: list[str] = []
    dev_size = min(n_dev, total - n_demos)
    test_size = min(n_test, total - n_demos - dev_size)
    if test_size < n_test:
        notes.append(f"task {task.name} has {total} examples: test uses {test_size} instead of {n_test}"
                     + (" (no held-out test score)" if test_size == 0 else ""))
    if dev_size < n_dev:
        notes.append(f"task {task.name} has {total} examples: dev uses {dev_size} instead of {n_dev}")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    picked = [task.examples[i] for i in order]
    return Splits(
        demos=picked[:n_demos],
        dev=picked[n_demos : n_demos + dev_size],
        test=picked[n_demos + dev_size : n_demos + dev_size + test_size],
        notes=notes,
    )
