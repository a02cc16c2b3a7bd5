"""The generator's prompt, measured: for each prompt style x soft-token position, what 32 soft prompts write.

    .venv/bin/python bench/bench_generator.py --model qwen2.5-coder-1.5b                # default grid, 15 tasks
    .venv/bin/python bench/bench_generator.py --model qwen2.5-coder-0.5b --positions tail answer start
    .venv/bin/python bench/bench_generator.py ... --json bench/results/generator-X.json --resume   # go on

For each task (the quality benchmark's tune group and the first five of its held-out group; instruction-induction
tasks come from ``--ii``, ``../shared/data/instruction_induction`` by default) it draws the task's demos as a run
would (seed 0, 5 demos), decodes ``--n`` soft prompts (Sobol points in [-1, 1]^10, 5 soft tokens, the run's
projection, the model's soft scale) greedily for every style x position, and counts:

- ``echo``: the share of decodes that only restate the prompt (:func:`engine.prompts.is_echo`) or are the
  placeholder (the cleaner found no instruction);
- ``on task``: the share that name the task, by a stated cheap proxy: the decode shares a content word (first five
  letters) with the task's hand-written instruction (``bench/quality.py``'s MANUAL; function words, framing words
  and a few generic ones such as "write" and "word" do not count);
- ``distinct``: distinct instructions among the ``--n``;
- ``best dev`` (with ``--score``): the best of the distinct instructions on ``--dev`` dev examples, scored by the
  embedded black box with the task's metric (the engine's own scoring and response cache).

Prints one row per style x position (means over tasks, and over the tune and held-out tasks apart) and writes
every cell with its decodes as JSON (``--json``), after each cell, so ``--resume`` continues a stopped run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import GROUPS, MANUAL, ensure_ii_task  # noqa: E402

from engine.prompts import PLACEHOLDER_INSTRUCTION, SOFT_POSITIONS, _stems, is_echo  # noqa: E402

#: Words that say nothing about which task it is, beyond the prompt's own framing and function words.
GENERIC = frozenset(_stems("write word words given means same two english form answer one result number the "
                           "input output sentence"))
TASKS = GROUPS["tune"] + GROUPS["holdout"][:5]


def _content(text: str) -> set[str]:
    from engine.prompts import _ECHO_VOCABULARY, _FUNCTION_WORDS

    return {w[:5] for w in _stems(text)
            if w not in _FUNCTION_WORDS and w not in _ECHO_VOCABULARY and w not in GENERIC and len(w) > 2}


def on_task(task: str, instruction: str) -> bool:
    """The cheap proxy: the instruction shares a content word (first five letters) with the hand-written one."""
    return bool(_content(MANUAL[task]) & _content(instruction))


def is_junk(text: str) -> bool:
    return text == PLACEHOLDER_INSTRUCTION or is_echo(text)


async def best_dev(engine: Any, task_name: str, texts: list[str], n_dev: int) -> dict[str, float]:
    """Each distinct instruction's mean dev score on the embedded black box (the run's dev split, seed 0)."""
    from engine.blackbox.scoring import score_instruction
    from engine.tasks import load_task, make_splits

    task = load_task(task_name)
    splits = make_splits(task, n_demos=5, n_dev=n_dev, n_test=0, seed=0)
    name, profile = engine.config.endpoint(None)
    bb, _judge = await engine._scorers(task, name, profile)
    out = {}
    for text in texts:
        out[text] = (await score_instruction(bb, task, text, splits.dev)).mean
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="generator: catalog name or path (default: the default one)")
    ap.add_argument("--styles", nargs="+", default=["paper", "direct"])
    ap.add_argument("--positions", nargs="+", default=["tail", "answer", "start"], choices=SOFT_POSITIONS)
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--ii", default=str(ROOT.parent / "shared" / "data" / "instruction_induction"))
    ap.add_argument("--n", type=int, default=32, help="soft prompts per cell")
    ap.add_argument("--scale", type=float, default=None, help="soft scale (default: the model's measured one)")
    ap.add_argument("--score", action="store_true", help="score the distinct instructions on the black box")
    ap.add_argument("--dev", type=int, default=10, help="dev examples per score")
    ap.add_argument("--home", default=None, help="IZ_HOME (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="results file (default bench/results/generator-<date>.json)")
    ap.add_argument("--resume", action="store_true", help="keep the cells already in --json")
    args = ap.parse_args()

    from engine import paths

    os.environ.setdefault("IZ_MODELS", str(paths.models_dir()))
    os.environ.setdefault("IZ_CACHE", str(paths.cache_dir()))
    os.environ["IZ_HOME"] = args.home or tempfile.mkdtemp(prefix="iz-bench-gen-")
    os.environ["IZ_CONFIG"] = str(Path(os.environ["IZ_HOME"]) / "config.toml")

    from torch.quasirandom import SobolEngine

    from engine.config import GeneratorSettings
    from engine.generator_setup import GENERATOR_KNOBS, generator_spec, make_generator
    from engine.tasks import load_task, make_splits

    settings = GeneratorSettings(model=args.model)
    path, name = generator_spec(settings)
    knobs = dict(GENERATOR_KNOBS.get(name or "", {}))
    if args.scale is not None:
        knobs["soft_scale"] = args.scale
    knobs.pop("prompt_style", None)
    knobs.pop("soft_position", None)
    gen = make_generator(path, "cpu", 32, 8, **knobs)
    label = name or Path(path).name
    out_path = Path(args.json or ROOT / "bench" / "results" / f"generator-{label}-{dt.date.today()}.json")
    cells: list[dict[str, Any]] = []
    if args.resume and out_path.is_file():
        cells = json.loads(out_path.read_text(encoding="utf-8"))["cells"]
    done = {(c["task"], c["style"], c["position"]) for c in cells}
    engine = None
    loop = asyncio.new_event_loop()  # one loop for every cell: the engine's HTTP clients live on it
    if args.score:
        from engine.runner import Engine

        engine = Engine()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{platform.node()} "
            f"{os.cpu_count()} cores", "commit": commit, "model": label, "n": args.n,
            "soft_scale": gen.soft_scale, "dev": args.dev if args.score else None,
            "command": " ".join(["bench/bench_generator.py", *sys.argv[1:]])}
    Z = SobolEngine(10, scramble=True, seed=0).draw(args.n).double() * 2 - 1
    proj = gen.projection(10, 5, 0)
    scores_cache: dict[tuple[str, str], float] = {}
    for task in args.tasks:
        if task.startswith("ii_"):
            ensure_ii_task(Path(args.ii), task)
        splits = make_splits(load_task(task), n_demos=5, n_dev=1, n_test=0, seed=0)
        for style in args.styles:
            for pos in args.positions:
                if (task, style, pos) in done:
                    continue
                gen.soft_position = pos
                t0 = time.monotonic()
                texts = gen.instructions(Z, splits.demos, proj, 5, style=style)
                cell: dict[str, Any] = {
                    "task": task, "group": "tune" if task in GROUPS["tune"] else "holdout", "style": style,
                    "position": pos, "seconds": round(time.monotonic() - t0, 1), "texts": texts,
                    "echo": sum(map(is_junk, texts)) / len(texts),
                    "on_task": sum(on_task(task, t) for t in texts) / len(texts),
                    "distinct": len(set(texts)),
                }
                if engine is not None:
                    todo = [t for t in dict.fromkeys(texts) if (task, t) not in scores_cache]
                    for t, v in loop.run_until_complete(best_dev(engine, task, todo, args.dev)).items():
                        scores_cache[(task, t)] = v
                    cell["best_dev"] = max(scores_cache[(task, t)] for t in set(texts))
                cells.append(cell)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_text(json.dumps({"meta": meta, "cells": cells}, indent=1), encoding="utf-8")
                best = sorted(set(texts), key=lambda t: -on_task(task, t))[0]
                print(f"{task:<24} {style:<6} {pos:<6} echo {cell['echo']:.2f} on task {cell['on_task']:.2f} "
                      f"distinct {cell['distinct']:>2} {cell.get('best_dev', '')} ({cell['seconds']:.0f} s) "
                      f"{best!r}", flush=True)
    if engine is not None:
        loop.run_until_complete(engine.aclose())
    loop.close()
    print_table(cells, meta)


def print_table(cells: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Means over tasks per style x position: all tasks, then the tune and held-out tasks apart."""
    print(f"\n{meta['model']}, {meta['n']} soft prompts per cell, soft scale {meta['soft_scale']:g}, "
          f"{meta['date']}, {meta['machine']}, commit {meta['commit']}")
    print("| style | position | tasks | echo | on task (tune / held-out) | distinct per 32 | best dev |")
    print("|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((c["style"], c["position"]) for c in cells))
    for style, pos in keys:
        cs = [c for c in cells if c["style"] == style and c["position"] == pos]

        def mean(key: str, group: str | None = None, cs: list[dict[str, Any]] = cs) -> float:
            vals = [c[key] for c in cs if key in c and (group is None or c["group"] == group)]
            return sum(vals) / len(vals) if vals else float("nan")

        scale = 32 / meta["n"]
        dev = mean("best_dev")
        print(f"| {style} | {pos} | {len(cs)} | {mean('echo'):.2f} | {mean('on_task'):.2f} "
              f"({mean('on_task', 'tune'):.2f} / {mean('on_task', 'holdout'):.2f}) | "
              f"{mean('distinct') * scale:.1f} | {'-' if dev != dev else f'{dev:.2f}'} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        data = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        print_table(data["cells"], data["meta"])
    else:
        main()
