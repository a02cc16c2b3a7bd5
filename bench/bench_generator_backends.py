"""The generator's backends side by side: llama.cpp (quantised GGUF) vs transformers (float32, bfloat16).

    python bench/bench_generator_backends.py [--models smollm2-135m qwen2.5-coder-0.5b] [--n 16] [--task antonyms]

Each (model, backend, dtype) runs in its own process, so its peak resident memory is its own: load the model,
write instructions for ``n`` fixed random soft prompts (one batch per ``batch_size``), print a JSON line. The
table shows load time, instructions per second (batched), peak RSS, the speed ratio to transformers float32
measured in the same run, and how many instructions equal the float32 ones for the same z. They need not all be
equal: the GGUF's Q4 weights dequantised to float32 (transformers) and the same weights used quantised in place
(llama.cpp) give slightly different logits, and greedy decoding follows a near-tie either way; bfloat16 rounds
every activation. Models must be pulled (``iz models pull NAME``); the bundled SmolLM2 always is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = [("transformers", "float32"), ("transformers", "bfloat16"), ("llama_cpp", "-")]


def worker(model: str, backend: str, dtype: str, n: int, task: str, batch_size: int) -> None:
    import torch

    from bench.bench_generator import demos_for
    from engine.generator_setup import make_generator
    from engine.models import catalog

    knobs = {"dtype": dtype} if backend == "transformers" else {}
    t0 = time.perf_counter()
    gen = make_generator(catalog.resolve(model), "cpu", 32, batch_size, backend=backend, **knobs)
    gen.load()
    load_s = time.perf_counter() - t0
    demos, _ = demos_for(task)
    A = gen.projection(10, 5, seed=0)
    Z = torch.rand(n, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    gen.instructions(Z[:1], demos, A, 5)  # warm: prompt cache, kernels
    t = time.perf_counter()
    out = gen.instructions(Z, demos, A, 5)
    gen_s = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "gen_s": gen_s, "rss_mb": rss_mb, "instructions": out}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--task", default="antonyms")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "BACKEND", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.n, args.task, args.batch_size)
        return

    from engine.models import catalog

    print(f"{args.n} soft prompts on {args.task}, batch {args.batch_size}, {os.cpu_count()} CPUs; "
          f"agreement = same instruction as transformers float32 for the same z")
    print(f"{'model':<20} {'backend':<13} {'dtype':<9} {'load s':>7} {'instr/s':>8} {'x f32':>6} {'peak MB':>8} "
          f"{'agree':>6} {'distinct':>8}")
    for model in args.models:
        if catalog.local_path(catalog.get(model)) is None:
            print(f"{model:<20} not pulled (iz models pull {model})")
            continue
        results = {}
        for backend, dtype in CONFIGS:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", model, backend, dtype, "--n", str(args.n),
                 "--task", args.task, "--batch-size", str(args.batch_size)],
                capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{model:<20} {backend:<13} {dtype:<9} failed: {tail[:80]}")
                continue
            results[(backend, dtype)] = json.loads(proc.stdout.strip().splitlines()[-1])
        base = results.get(("transformers", "float32"))
        for (backend, dtype), r in results.items():
            rate = args.n / r["gen_s"]
            ratio = rate / (args.n / base["gen_s"]) if base else float("nan")
            agree = (sum(a == b for a, b in zip(r["instructions"], base["instructions"], strict=True))
                     if base else -1)
            print(f"{model:<20} {backend:<13} {dtype:<9} {r['load_s']:>7.1f} {rate:>8.2f} {ratio:>6.2f} "
                  f"{r['rss_mb']:>8.0f} {agree:>3}/{args.n:<2} {len(set(r['instructions'])):>8}")


if __name__ == "__main__":
    main()
