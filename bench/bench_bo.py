"""BO vs random search on cheap synthetic objectives shaped like instruction scores.

Each objective returns (mean score, per-"example" score vector), as a task's dev evaluation does, so the
instruction-coupled kernel has score vectors to couple. Prints the best value found (mean over seeds) per kernel
and its ratio to random search with the same budget, measured in the same run.

    .venv/bin/python bench/bench_bo.py [--seeds 0 1 2] [--d 10] [--init 10] [--iters 3] [--q 5] [--loss-ulps K]

``--loss-ulps K`` multiplies every GP fit's loss by 1 + K * 2^-52 (in this process only), a change of the last
binary digit: the GP fits stop on flat ridges of the likelihood wherever rounding leads them, so runs with K = 0,
1, -1, 2 show how far rounding alone moves these figures. A change to the BO is only distinguishable from that
spread if it moves the figures further (BENCHMARKS.md, ninth session).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.bo import optimise_synthetic  # noqa: E402


def make_objectives(d: int) -> dict:
    g = torch.Generator().manual_seed(1234)
    centre = torch.rand(d, generator=g, dtype=torch.float64) * 1.2 - 0.6
    thresholds = torch.rand(20, d, generator=g, dtype=torch.float64) * 1.6 - 0.8

    def bumps(z: torch.Tensor) -> tuple[float, torch.Tensor]:
        per = torch.exp(-((z - centre) ** 2) / (2 * 0.4**2))
        return float(per.mean()), per

    def quantised(z: torch.Tensor) -> tuple[float, torch.Tensor]:
        # 20 "examples", each right (1) or wrong (0): right when z is close to the centre along most coordinates,
        # like a discrete instruction that either works on an example or does not.
        closeness = (z - centre).abs()
        per = ((closeness < (thresholds.abs() * 0.4 + 0.25)).double().mean(dim=1) > 0.6).double()
        return float(per.mean()), per

    return {"bumps": bumps, "quantised": quantised}


def perturb_fits(ulps: int) -> None:
    """Make every GP fit of engine.bo minimise its loss times (1 + ulps * 2^-52), a rounding-sized change."""
    from botorch.optim.closures import ForwardBackwardClosure, get_loss_closure_with_grads
    from botorch.optim.utils import get_parameters_and_bounds

    import engine.bo.surrogate as surrogate

    real = surrogate.fit_gpytorch_mll
    factor = 1.0 + ulps * 2.0**-52

    def fit(mll: Any, closure: Any = None, **kwargs: Any) -> Any:
        if closure is None:  # gpytorch's own loss, the closure botorch would build
            closure = get_loss_closure_with_grads(mll, get_parameters_and_bounds(mll, requires_grad=True)[0])
        forward = closure.forward
        return real(mll, closure=ForwardBackwardClosure(lambda: forward() * factor, closure.parameters), **kwargs)

    surrogate.fit_gpytorch_mll = fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--init", type=int, default=10)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--q", type=int, default=5)
    ap.add_argument("--kernels", nargs="+", default=["coupled", "coupled_residual", "matern"])
    ap.add_argument("--loss-ulps", type=int, default=0, help="multiply every GP fit's loss by 1 + K * 2^-52")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.loss_ulps:
        perturb_fits(args.loss_ulps)
    budget = dict(d=args.d, n_init=args.init, n_iter=args.iters, q=args.q)
    print(f"d={args.d}, {args.init} initial + {args.iters} x {args.q}, seeds {args.seeds}; best value found "
          f"(mean over seeds), ratio to random search in this run; loss x (1 + {args.loss_ulps} * 2^-52)")
    print(f"{'objective':<10} {'method':<20} {'best':>6} {'ratio':>6} {'sec/run':>8}")
    for name, fn in make_objectives(args.d).items():
        t0 = time.perf_counter()
        rnd = statistics.mean(optimise_synthetic(fn, **budget, seed=s, method="random")[-1] for s in args.seeds)
        print(f"{name:<10} {'random':<20} {rnd:6.3f} {1.0:6.2f} {(time.perf_counter() - t0) / len(args.seeds):8.1f}")
        for kernel in args.kernels:
            t0 = time.perf_counter()
            best = statistics.mean(
                optimise_synthetic(fn, **budget, seed=s, method="bo", kernel=kernel)[-1] for s in args.seeds
            )
            ratio = best / rnd if rnd else float("nan")
            print(f"{name:<10} {'bo/' + kernel:<20} {best:6.3f} {ratio:6.2f} "
                  f"{(time.perf_counter() - t0) / len(args.seeds):8.1f}")


if __name__ == "__main__":
    main()
