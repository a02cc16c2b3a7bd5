"""InstructZero vs its baselines on the offline pair (SmolLM2 generator, SmolLM2 black box via llama.cpp).

Runs each method on each task with the same budget through the real engine process, then prints one table:
test score, best dev score, evaluations, paid calls, calls saved, tokens, seconds, and the test score's ratio to
the random-soft-prompt baseline (the paper's "Uniform") measured in the same run.

    .venv/bin/python bench/bench_methods.py                      # defaults below
    .venv/bin/python bench/bench_methods.py --tasks first_letter sum --budget 20 --seeds 0 1

Uses a throwaway IZ_HOME unless --home is given, so benchmark runs do not fill your history.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.wire.client import EngineClient  # noqa: E402
from engine.wire.events import RunFailed  # noqa: E402


async def bench(tasks: list[str], methods: list[str], seeds: list[int], settings: dict) -> list[dict]:
    rows = []
    async with EngineClient() as client:
        for task in tasks:
            for method in methods:
                for seed in seeds:
                    run_id = await client.start_run(task, settings={**settings, "method": method, "seed": seed})
                    last = await client.wait_run(run_id)
                    if isinstance(last, RunFailed):
                        print(f"{task} {method} seed {seed}: FAILED {last.problem}", file=sys.stderr)
                        continue
                    s = last.summary
                    print(f"{task:<18} {method:<12} seed {seed}: test {s['test_score']} dev {s['dev_score']} "
                          f"({s['seconds']:.0f} s) {s['best_instruction']!r}", file=sys.stderr)
                    rows.append({"task": task, "method": method, "seed": seed, **s})
    return rows


def table(rows: list[dict], methods: list[str]) -> str:
    out = [f"{'task':<18} {'method':<12} {'test':>6} {'dev':>6} {'evals':>5} {'calls':>6} {'saved':>6} "
           f"{'tokens':>7} {'sec':>6} {'test/random':>11}"]
    tasks = sorted({r["task"] for r in rows}, key=[r["task"] for r in rows].index)
    for task in tasks:
        def mean(method: str, key: str, task: str = task) -> float:
            vals = [r[key] or 0.0 for r in rows if r["task"] == task and r["method"] == method]
            return statistics.mean(vals) if vals else float("nan")

        base = mean("random", "test_score")
        for m in methods:
            t = mean(m, "test_score")
            ratio = t / base if base and base == base and base > 0 else float("nan")
            out.append(f"{task:<18} {m:<12} {t:6.3f} {mean(m, 'dev_score'):6.3f} {mean(m, 'evaluations'):5.0f} "
                       f"{mean(m, 'calls'):6.0f} {mean(m, 'calls_saved'):6.0f} {mean(m, 'tokens'):7.0f} "
                       f"{mean(m, 'seconds'):6.0f} {ratio:11.2f}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["first_letter", "antonyms", "sentiment"])
    ap.add_argument("--methods", nargs="+", default=["instructzero", "random", "ape"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--init", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--dev", type=int, default=10)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--home", help="IZ_HOME to use (default: a temporary folder)")
    args = ap.parse_args()
    os.environ["IZ_HOME"] = args.home or tempfile.mkdtemp(prefix="iz-bench-")
    settings = {"budget_evaluations": args.budget, "n_init": args.init, "batch_size": args.batch,
                "n_dev": args.dev, "n_test": args.test}
    rows = asyncio.run(bench(args.tasks, args.methods, args.seeds, settings))
    print(f"\nbudget {args.budget} evaluations ({args.init} initial + batches of {args.batch}), dev {args.dev}, "
          f"test {args.test}, seeds {args.seeds}; metric: each task's own (see `iz tasks list`)")
    print(table(rows, args.methods))


if __name__ == "__main__":
    main()
