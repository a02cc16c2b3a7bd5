"""Benchmark the local generator: how many distinct instructions 50 random soft prompts give, and how fast.

    python bench/bench_generator_knobs.py [--model NAME] [--backend auto] [--n 50] [--batch-size 8] [--scale 12]
                                    [--position tail] [--system TEXT] [--speed-n 16]
                                    [--resample T ...] [--sensitivity T] [--perturb R ...] [--perturb-sample T]

For each of three tasks (5 demos from tasks/<name>/data.jsonl, or inline demos when the folder is missing) it
generates instructions for ``n`` random z (uniform in [-1, 1]^10, 5 soft tokens, seeded projection) and prints the
share of distinct instructions with a few examples. Then it times the same z decoded in batches (one ``generate``
call per batch) against one at a time, and prints instructions per second and the ratio. Uses the bundled SmolLM2
model offline unless ``--model`` names a catalog model (pulled with ``iz models pull``) or a path; nothing is
downloaded. "code" counts instructions that read as a programming task (function, string, program, ...), the
failure mode of the Qwen Coder generators.

What the knobs did on SmolLM2-135M (2 CPU cores, 3 tasks x 50 z, distinct instructions out of 150; "junk" =
placeholder, odd quotes, under 3 words or starting with The/A/An/This/It):

    soft_scale (x embedding std)   1        8        12 (default)   16        24
    projection seed 0              74 /15   101 /2   125 /6         126 /11   110 /11
    projection seed 5              69 /15    87 /0    99 /0         103 /3    -

Placement at scale 12, seed 0: at the end of the user turn ("tail", default) 125; before everything ("start",
as in the paper's code) 76; at the start of the user turn ("user") 57; inside the answer ("answer") 50 with 100
junk. At scale 1: "tail" 74, "user" 35, after the user turn's last words 82 (more noun-phrase junk); with 12 z
on larger_animal "start" 4, "user" 6, "pairs" 2, "tail" 10. At "tail" and scale 1: without the
no-repeat-3-gram rule 63 (loops that clean to the placeholder); a repetition penalty of 1.3 on top 76; soft
tokens built from mixtures of real word embeddings 86-92 but 20-25 placeholders. The repeats that remain are a
few attractor sentences of this small model; the runner never pays the black box twice for one instruction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.generator_setup import make_generator  # noqa: E402
from engine.models import catalog  # noqa: E402
from engine.resample import replace_repeats  # noqa: E402

CODE_WORDS = ("function", "string", "program", "code", "python", "list of", "array", "integer", "return")


def codey(text: str) -> bool:
    """An instruction that reads as a programming task rather than as a task for a person."""
    low = text.lower()
    return any(w in low for w in CODE_WORDS)


@dataclass(frozen=True)
class Demo:
    input: str
    answers: tuple[str, ...]


INLINE: dict[str, list[tuple[str, str]]] = {
    "larger_animal": [
        ("cat, elephant", "elephant"),
        ("whale, mouse", "whale"),
        ("ant, horse", "horse"),
        ("giraffe, rabbit", "giraffe"),
        ("dog, bee", "dog"),
    ],
    "first_letter": [("writer", "w"), ("beetle", "b"), ("potato", "p"), ("jewel", "j"), ("forest", "f")],
    "antonyms": [
        ("interior", "exterior"),
        ("real", "fake"),
        ("quick", "slow"),
        ("accept", "reject"),
        ("include", "exclude"),
    ],
}


def demos_for(task: str, k: int = 5) -> tuple[list[Demo], str]:
    """The first ``k`` examples of the built-in task, or the inline fallback."""
    path = ROOT / "tasks" / task / "data.jsonl"
    if path.is_file():
        demos = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            out = row["output"]
            demos.append(Demo(row["input"], tuple(out) if isinstance(out, list) else (out,)))
            if len(demos) == k:
                return demos, "tasks/"
    return [Demo(i, (o,)) for i, o in INLINE[task][:k]], "inline"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="catalog name or path (default: the bundled SmolLM2)")
    ap.add_argument("--backend", default="auto", choices=["auto", "llama_cpp", "transformers"])
    ap.add_argument("--system", default=None, help="system_prompt knob (chat models)")
    ap.add_argument("--style", default="paper", choices=["paper", "plain"], help="prompt_style knob")
    ap.add_argument("--n", type=int, default=50, help="random z per task")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--scale", type=float, default=None, help="soft_scale (default: the Generator's)")
    ap.add_argument("--position", default="tail", help="soft_position: start, user, pairs, tail, answer")
    ap.add_argument("--tokens", type=int, default=5, help="soft tokens (the runner's n_soft_tokens)")
    ap.add_argument("--kind", default="uniform", choices=["uniform", "normal"])
    ap.add_argument("--speed-n", type=int, default=16, help="z timed batched vs one at a time")
    ap.add_argument("--tasks", default="larger_animal,first_letter,antonyms")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--resample", type=float, nargs="*", default=[], metavar="T",
                    help="also count distinct texts after the runner's second tries at these temperatures")
    ap.add_argument("--resample-repeats", type=int, default=2, help="tries per repeat (the runner's default)")
    ap.add_argument("--sensitivity", type=float, default=None, metavar="T",
                    help="also measure how much a sampled instruction depends on z and how much on the seed, at T")
    ap.add_argument("--perturb", type=float, nargs="*", default=[], metavar="R",
                    help="also decode greedily each z moved by R times a random direction (a greedy second try)")
    ap.add_argument("--perturb-sample", type=float, default=None, metavar="T",
                    help="with --perturb: sample at T with one seed for every z instead of greedy decoding")
    args = ap.parse_args()

    t0 = time.perf_counter()
    knobs: dict[str, object] = {} if args.scale is None else {"soft_scale": args.scale}
    if args.system:
        knobs["system_prompt"] = args.system
    knobs["prompt_style"] = args.style
    model = catalog.resolve(args.model) if args.model else None
    gen = make_generator(model, batch_size=args.batch_size, backend=args.backend, soft_position=args.position,
                         **knobs)
    gen.load()
    load_s = time.perf_counter() - t0
    d, n_tokens = 10, args.tokens
    A = gen.projection(d, n_tokens, seed=args.seed, kind=args.kind)
    Z = torch.rand(args.n, d, generator=torch.Generator().manual_seed(args.seed + 1)) * 2 - 1
    print(
        f"generator {args.model or 'smollm2-135m'} ({type(gen).__name__}) on {gen.device} "
        f"({torch.get_num_threads()} threads), load {load_s:.1f}s; "
        f"d={d}, {n_tokens} soft tokens, {args.kind} projection, scale {gen.soft_scale:g}, position {args.position}, "
        f"max_new_tokens {gen.max_new_tokens}"
    )
    print()
    print(f"{'task':<15} {'demos':<7} {'distinct':>9} {'share':>6} {'top count':>9} {'code':>5} {'s':>6}  examples")
    all_demos = {}
    for task in args.tasks.split(","):
        demos, src = demos_for(task)
        all_demos[task] = demos
        t = time.perf_counter()
        out = gen.instructions(Z, demos, A, n_tokens)
        dt = time.perf_counter() - t
        counts = Counter(out)
        distinct = len(counts)
        print(
            f"{task:<15} {src:<7} {distinct:>5}/{len(out):<3} {distinct / len(out):>6.2f} "
            f"{counts.most_common(1)[0][1]:>9} {sum(map(codey, out)):>5} {dt:>6.1f}"
        )
        for text, c in counts.most_common(args.examples):
            print(f"{'':<55}  {c:>2}x {text}")
        for temperature in args.resample:
            t = time.perf_counter()

            def retry(rows: list[int], attempt: int, temperature: float = temperature,
                      demos: list[Demo] = demos) -> list[str]:
                return gen.instructions(Z[rows], demos, A, n_tokens, sample=(temperature, args.seed * 16 + attempt))

            fresh, n_repeats = replace_repeats(out, [], retry, args.resample_repeats)
            fc = Counter(fresh)
            print(f"{'  resampled T=' + format(temperature, 'g'):<23} {len(fc):>5}/{len(fresh):<3} "
                  f"{len(fc) / len(fresh):>6.2f} {fc.most_common(1)[0][1]:>9} {sum(map(codey, fresh)):>5} "
                  f"{time.perf_counter() - t:>6.1f}  ({n_repeats} greedy repeats re-decoded)")
            for text in [x for x in dict.fromkeys(fresh) if x not in counts][: args.examples]:
                print(f"{'':<55}  new: {text}")
    print()
    if args.perturb:
        perturbation(gen, all_demos, A, Z, n_tokens, args.perturb, args.seed, args.perturb_sample)
    if args.sensitivity is not None:
        sensitivity(gen, all_demos, A, Z, n_tokens, args.sensitivity, args.seed)

    if args.speed_n <= 0:
        return
    task = args.tasks.split(",")[0]
    demos = all_demos[task]
    Zs = Z[: args.speed_n]
    gen.instructions(Zs[:1], demos, A, n_tokens)  # warm: prompt cache and kernels
    t = time.perf_counter()
    batched = gen.instructions(Zs, demos, A, n_tokens)
    batched_s = time.perf_counter() - t
    t = time.perf_counter()
    single = [gen.instructions(z[None], demos, A, n_tokens)[0] for z in Zs]
    single_s = time.perf_counter() - t
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print(f"speed on {task}, {len(Zs)} z:")
    print(f"{'mode':<22} {'seconds':>8} {'instr/s':>8}")
    print(f"{'batched (bs ' + str(args.batch_size) + ')':<22} {batched_s:>8.1f} {len(Zs) / batched_s:>8.2f}")
    print(f"{'one at a time':<22} {single_s:>8.1f} {len(Zs) / single_s:>8.2f}")
    print(f"ratio batched/one-at-a-time: {single_s / batched_s:.2f}x; identical outputs {same}/{len(Zs)}")


def _words(text: str) -> set[str]:
    return set(text.lower().replace(".", " ").replace(",", " ").split())


def _similarity(a: list[str], b: list[str]) -> tuple[float, float]:
    """(share of rows with the same text, mean word Jaccard of the rows) of two equally long lists of texts."""
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    jac = sum(len(_words(x) & _words(y)) / max(1, len(_words(x) | _words(y))) for x, y in zip(a, b, strict=True))
    return same, jac / len(a)


def perturbation(gen: object, all_demos: dict[str, list[Demo]], A: object, Z: torch.Tensor, n_tokens: int,
                 radii: list[float], seed: int, temperature: float | None = None) -> None:
    """Would a *greedy* second try at a nearby soft prompt do what sampling does for a repeat?

    Why: a sampled second try is decided by its seed more than by z (``--sensitivity``), so the score BO models is
    mostly sampling noise. Decoding z + r*u greedily (u uniform in [-1, 1]^d, clipped to the box) would keep the text
    a function of the point, if nearby points wrote new texts. For each r: rows whose text did not change, texts
    not among the unmoved z's, and the word Jaccard to the unmoved text (how local the change is).

    With ``temperature`` (``--perturb-sample T``): the same, sampling instead of greedy, every z decoded alone
    with one fixed seed (common random numbers: the text is then a function of z alone, the question being
    whether nearby z write nearby texts)."""
    U = torch.rand(*Z.shape, generator=torch.Generator().manual_seed(seed + 2)) * 2 - 1

    def decode(points: torch.Tensor, demos: list[Demo]) -> list[str]:
        if temperature is None:
            return gen.instructions(points, demos, A, n_tokens)  # type: ignore[attr-defined]
        return [gen.instructions(points[i:i + 1], demos, A, n_tokens,  # type: ignore[attr-defined]
                                 sample=(temperature, seed + 7))[0] for i in range(len(points))]

    how = "greedy" if temperature is None else f"sampled at T {temperature:g}, one seed for every z"
    print(f"{how} at moved z (z + r*u, clipped), {len(Z)} z per task: unchanged rows / new texts / word Jaccard")
    print(f"{'task':<15}" + "".join(f"{'r=' + format(r, 'g'):>20}" for r in radii))
    for task, demos in all_demos.items():
        base = decode(Z, demos)
        cells = []
        for r in radii:
            moved = decode((Z + r * U).clamp(-1, 1), demos)
            same, jac = _similarity(base, moved)
            cells.append(f"{round(same * len(Z))} / {len(set(moved) - set(base))} / {jac:.2f}")
        print(f"{task:<15}" + "".join(f"{c:>20}" for c in cells))
    print()


def sensitivity(gen: object, all_demos: dict[str, list[Demo]], A: object, Z: torch.Tensor, n_tokens: int,
                temperature: float, seed: int) -> None:
    """Does a *sampled* instruction depend on its soft prompt, or only on the sampling seed?

    Why: the runner decodes most soft prompts by sampling (second tries for repeats and echoes), and BO can only
    help if what is written depends on z. Each task's z are decoded at ``temperature`` twice with seed s1 and once
    with s2, and a second set of z (Z') once with s1; row i of each batch draws from the same random stream, so:
    (same z, same seed) is the noise floor of decoding itself, (same z, other seed) is what the seed changes,
    (other z, same seed) is what z changes, and (other z, other seed) is two unrelated draws. If z mattered, (other z,
    same seed) would sit near the unrelated pair; if only the seed mattered, near (same z, same seed)."""
    Z2 = torch.rand(*Z.shape, generator=torch.Generator().manual_seed(seed + 99)) * 2 - 1
    s1, s2 = seed * 16 + 1, seed * 16 + 2
    print(f"sampled at T={temperature:g}: share of rows with identical text / mean word Jaccard, {len(Z)} z per task")
    print(f"{'task':<15} {'same z, same seed':>18} {'same z, other seed':>19} {'other z, same seed':>19} "
          f"{'other z, other seed':>20}")
    for task, demos in all_demos.items():
        a = gen.instructions(Z, demos, A, n_tokens, sample=(temperature, s1))  # type: ignore[attr-defined]
        a2 = gen.instructions(Z, demos, A, n_tokens, sample=(temperature, s1))  # type: ignore[attr-defined]
        b = gen.instructions(Z, demos, A, n_tokens, sample=(temperature, s2))  # type: ignore[attr-defined]
        c = gen.instructions(Z2, demos, A, n_tokens, sample=(temperature, s1))  # type: ignore[attr-defined]
        d = gen.instructions(Z2, demos, A, n_tokens, sample=(temperature, s2))  # type: ignore[attr-defined]
        cells = [_similarity(a, a2), _similarity(a, b), _similarity(a, c), _similarity(a, d)]
        print(f"{task:<15}" + "".join(f"{f'{x:.2f} / {j:.2f}':>20}" for x, j in cells))
    print()


if __name__ == "__main__":
    main()
