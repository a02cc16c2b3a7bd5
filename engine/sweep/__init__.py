"""Sweeps: a grid of runs (tasks x methods x seeds x models) executed by workers, recorded by one driver.

- :mod:`engine.sweep.spec` — what a sweep is (validated) and its cells.
- :mod:`engine.sweep.journal` — a worker's private store that reports every write, and the driver's replay of them.
- :mod:`engine.sweep.worker` — runs cells with a warm engine (its generator stays loaded between cells).
- :mod:`engine.sweep.backends` — where workers live: local processes, or Ray actors on a laptop or a cluster.
- :mod:`engine.sweep.driver` — the one writer: creates runs, hands cells out, replays what comes back, resumes.
- :mod:`engine.sweep.report` — the method x task table of a sweep.

The driver process never imports the ML stack; workers do.
"""
