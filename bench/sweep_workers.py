"""Sweep wall time with 1 and 2 workers, on local processes and on a local Ray, in one run (alternately).

The grid is the sweep integration test's (tests/integration/test_sweep.py): 2 tasks x {random, manual} x 2 seeds,
budget 2, dev 3, test 3, the bundled SmolLM2 as generator and embedded black box. Each sweep gets a fresh IZ_HOME
(nothing answered from an earlier sweep's cache) and runs through the real `iz sweep` command.

    .venv/bin/python bench/sweep_workers.py [--rounds 2] [--no-ray]

Prints one table: median wall seconds per (backend, workers) and the ratio to 1 worker of the same backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["--tasks", "sum,antonyms", "--methods", "random,manual", "--instruction", "Write the answer.", "--seeds", "0-1",
        "--budget", "2", "--init", "2", "--batch", "1", "--dev", "3", "--test", "3", "--demos", "3"]


def one(workers: int, ray: bool) -> float:
    home = Path(tempfile.mkdtemp(prefix="iz-sweep-bench-"))
    env = {**os.environ, "IZ_HOME": str(home), "IZ_CONFIG": str(home / "config.toml"),
           "IZ_GENERATOR__MODEL": "smollm2-135m", "IZ_ENDPOINTS__EMBEDDED__MODEL": "smollm2-135m"}
    args = [sys.executable, "-m", "iz_tui", "sweep", *GRID, "--workers", str(workers), "--json"]
    if ray:
        args += ["--ray", "local"]
    t0 = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0 or json.loads(out.stdout)["status"] != "finished":
        raise SystemExit(f"sweep failed ({'ray' if ray else 'local'}, {workers} workers): {out.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    backends = [False] if args.no_ray else [False, True]
    walls: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for ray in backends:
            for workers in (1, 2):
                w = one(workers, ray)
                walls.setdefault(("ray" if ray else "local", workers), []).append(w)
                print(f"round {r + 1}: {'ray' if ray else 'local'} x{workers}: {w:.1f} s", file=sys.stderr, flush=True)
    print(f"| backend | workers | median wall s ({args.rounds} rounds) | x 1 worker |")
    print("|---|---|---|---|")
    for (backend, workers), ws in walls.items():
        base = statistics.median(walls[(backend, 1)])
        print(f"| {backend} | {workers} | {statistics.median(ws):.1f} | {statistics.median(ws) / base:.2f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
