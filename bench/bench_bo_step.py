"""Time one BO step (``engine.bo.propose``) as the runner calls it, against the committed (git HEAD) engine/bo.

The history is fake but shaped like a real run's at the paper's settings (d = 10 latent dims, 20 dev examples,
batches of 25): a Sobol start, then points clustered around the best ones; every point "decodes" to one of a
handful of instructions (its nearest prototype), so score vectors repeat a lot and scores are multiples of 0.05.

Old and new run interleaved in the same process (alternating which goes first), so load on the machine affects
both alike: read the ratio, not the seconds. The old path is the HEAD version of engine/bo/*.py, loaded from git
into a private package for this comparison only. Proposals are compared point by point (max abs difference).

    .venv/bin/python bench/bench_bo_step.py [--n 25 50 100 150] [--repeats 3] [--threads 1] [--ref HEAD]
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import bo  # noqa: E402

OLD_PACKAGE = "_bo_at_ref"


def load_reference(ref: str) -> ModuleType:
    """engine/bo as committed at ``ref``, importable as a separate package (its engine.bo imports rewritten)."""
    root = tempfile.mkdtemp(prefix="bench_bo_step_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = Path(root) / OLD_PACKAGE
    folder.mkdir()
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{ref}:engine/bo"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{ref}:engine/bo/{name}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            (folder / name).write_text(text.replace("engine.bo.", f"{OLD_PACKAGE}.").replace("engine.bo", OLD_PACKAGE))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(OLD_PACKAGE)


def make_history(n: int, *, d: int = 10, m: int = 20, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(Z, S, y) of a fake run with ``n`` scored points; deterministic for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    k = 8 + n // 10  # distinct instructions seen: grows slowly with the number of points
    prototypes = torch.rand(k, d, generator=g, dtype=torch.float64) * 2 - 1
    quality = torch.rand(k, 1, generator=g, dtype=torch.float64) ** 2
    vectors = (torch.rand(k, m, generator=g, dtype=torch.float64) < quality).double()
    vectors[: max(2, k // 4)] = 0.0  # instructions that get nothing right (a wrong output format, say)
    n_init = min(n, 25)
    Z = bo.sobol_points(n_init, d, seed)
    while Z.shape[0] < n:  # later batches: around the best points so far, as BO's proposals are
        S = vectors[torch.cdist(Z, prototypes).argmin(-1)]
        top = Z[torch.argsort(S.mean(-1), descending=True, stable=True)[:5]]
        batch = min(25, n - Z.shape[0])
        picks = top[torch.randint(0, top.shape[0], (batch,), generator=g)]
        noise = 0.25 * torch.randn(batch, d, generator=g, dtype=torch.float64)
        Z = torch.cat([Z, (picks + noise).clamp(-1, 1)])
    S = vectors[torch.cdist(Z, prototypes).argmin(-1)]
    return Z, S, S.mean(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[25, 50, 100, 150])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--q", type=int, default=25, help="batch size (the paper's: 25)")
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--m", type=int, default=20, help="dev examples per score vector")
    parser.add_argument("--kernel", default="coupled")
    parser.add_argument("--optimizer", default="cmaes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--ref", default="HEAD", help="git revision of the old engine/bo")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    old = load_reference(args.ref)
    paths = {"old": old.propose, "new": bo.propose}

    def step(which: str, Z: torch.Tensor, S: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        points = paths[which](Z, S, y, args.q, seed=seed, kernel=args.kernel, optimizer=args.optimizer)
        return time.perf_counter() - start, points

    warm = make_history(min(args.n), d=args.d, m=args.m)
    for which in paths:  # imports and first-call setup out of the timings
        step(which, *warm, seed=1)

    print(f"kernel={args.kernel} optimizer={args.optimizer} q={args.q} d={args.d} m={args.m} "
          f"threads={args.threads} repeats={args.repeats} ref={args.ref}")
    print("| n | distinct score vectors | old median s | new median s | new/old | max abs diff of proposals |")
    print("|---|---|---|---|---|---|")
    totals = {"old": 0.0, "new": 0.0}
    worst = 0.0
    for n in args.n:
        Z, S, y = make_history(n, d=args.d, m=args.m)
        seed = 1000 + n // 25  # as the runner seeds: run seed * 1000 + iteration
        times: dict[str, list[float]] = {"old": [], "new": []}
        points: dict[str, list[torch.Tensor]] = {"old": [], "new": []}
        for r in range(args.repeats):
            for which in ("old", "new") if r % 2 == 0 else ("new", "old"):
                seconds, batch = step(which, Z, S, y, seed)
                times[which].append(seconds)
                points[which].append(batch)
        for which in paths:  # each path is deterministic: every repeat proposes the same batch
            assert all(torch.equal(points[which][0], p) for p in points[which]), f"{which} is not deterministic"
        old_s, new_s = statistics.median(times["old"]), statistics.median(times["new"])
        diff = float((points["old"][0] - points["new"][0]).abs().max())
        distinct = torch.unique(S, dim=0).shape[0]
        print(f"| {n} | {distinct} | {old_s:.2f} | {new_s:.2f} | {new_s / old_s:.2f} | {diff:.1e} |", flush=True)
        totals["old"] += old_s
        totals["new"] += new_s
        worst = max(worst, diff)
    old_s, new_s = totals["old"], totals["new"]
    print(f"| all | | {old_s:.2f} | {new_s:.2f} | {new_s / old_s:.2f} | {worst:.1e} |")


if __name__ == "__main__":
    main()
