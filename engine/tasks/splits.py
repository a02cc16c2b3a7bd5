"""Drawing the demo, dev and test splits of a task, deterministically by seed.

Demos are shown to the instruction generator, dev examples score candidate instructions during the search, and test
examples give the final, held-out score. The three are disjoint, so a test score is never measured on examples the
search saw. When a task is smaller than asked, the test split shrinks first (it only reports), then dev; the
shrinkage is described in ``Splits.notes`` so front ends can say what was actually used.

A task with its own demos (``demos.jsonl``: the instruction-induction set-up, demos from ``induce``, dev and test from
``execute``) draws the demos from those only, and dev and test from all of its examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.errors import TaskError
from engine.tasks.limits import check_sizes
from engine.tasks.model import Example, Task


@dataclass
class Splits:
    demos: list[Example]
    dev: list[Example]
    test: list[Example]
    notes: list[str] = field(default_factory=list)


def make_splits(task: Task, *, n_demos: int, n_dev: int, n_test: int, seed: int) -> Splits:
    """Shuffle the example indices with ``random.Random(seed)`` and cut demos, dev, test in that order.

    Every example drawn is checked against the size limit (engine/tasks/limits.py), so a task folder written by hand
    with an example no model could read fails before the run is recorded, naming the example."""
    splits = _make_splits(task, n_demos=n_demos, n_dev=n_dev, n_test=n_test, seed=seed)
    check_sizes([*splits.demos, *splits.dev, *splits.test], f"task {task.name}")
    return splits


def _make_splits(task: Task, *, n_demos: int, n_dev: int, n_test: int, seed: int) -> Splits:
    for label, value, least in (("demos", n_demos, 0), ("dev", n_dev, 1), ("test", n_test, 0)):
        if not isinstance(value, int) or value < least:
            raise TaskError(f"{label} size must be a whole number >= {least}, got {value!r}",
                            f"set n_{label} to {least} or more")
    if task.demos:
        return _split_own_demos(task, n_demos=n_demos, n_dev=n_dev, n_test=n_test, seed=seed)
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


def _split_own_demos(task: Task, *, n_demos: int, n_dev: int, n_test: int, seed: int) -> Splits:
    """Demos from ``task.demos``, dev and test from ``task.examples``, each shuffled by its own stream of the seed
    (so the dev split does not change with the number of demos asked for)."""
    notes: list[str] = []
    n_shown = min(n_demos, len(task.demos))
    if n_shown < n_demos:
        notes.append(f"task {task.name} has {len(task.demos)} demos: the generator sees {n_shown} instead of "
                     f"{n_demos}")
    total = len(task.examples)
    dev_size = min(n_dev, total)
    test_size = min(n_test, total - dev_size)
    if test_size < n_test:
        notes.append(f"task {task.name} has {total} examples: test uses {test_size} instead of {n_test}"
                     + (" (no held-out test score)" if test_size == 0 else ""))
    if dev_size < n_dev:
        notes.append(f"task {task.name} has {total} examples: dev uses {dev_size} instead of {n_dev}")
    rng = random.Random(seed)
    demos = list(task.demos)
    rng.shuffle(demos)
    order = list(range(total))
    random.Random(seed + 1).shuffle(order)
    picked = [task.examples[i] for i in order]
    return Splits(demos=demos[:n_shown], dev=picked[:dev_size], test=picked[dev_size : dev_size + test_size],
                  notes=notes)
