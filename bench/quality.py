"""The quality benchmark: does InstructZero find better instructions than its baselines at an equal budget?

Every method gets the same black-box budget (evaluations of ``--dev`` examples each) on the same task, seed and
splits, through the real engine core and the real models; the winner of each run (best dev score) is scored on
the held-out test split. The grid runs as one sweep (`iz sweep`'s core, engine.sweep): ``--workers N`` local
worker processes or ``--ray ADDRESS``, every cell an ordinary run in the benchmark's history. Methods:

- ``instructzero``: soft prompts -> local generator -> instructions, chosen by BO with the instruction-coupled
  kernel (the paper's method);
- ``iz_matern``: the same with a plain Matern kernel on the soft prompts (ablation; not run by default);
- ``iz_scale48``, ``iz_scale96``, ``random_scale96``: InstructZero / random with larger soft prompts (the run
  setting ``soft_scale``; the Qwen generators ignore small ones, see BENCHMARKS.md);
- ``random``: random soft prompts, the paper's "Uniform" baseline;
- ``iz_graded``: InstructZero whose BO also learns from partly right answers (``surrogate = "graded"``: each dev
  example's score or, when higher, its word-overlap F1 with a right answer), so that a run whose first
  candidates all score 0 still has something to model;
- ``iz_greedy``, ``random_greedy``: InstructZero / random without second tries for repeats (``resample_repeats =
  0``: greedy decoding only, as in the paper; the default re-decodes a soft prompt whose text the run has by
  sampling, see engine/resample.py);
- ``iz_paper``, ``iz_direct``, ``random_paper``, ``ape_paper``: the same methods with the generator (and APE's
  proposer) asked in the paper's framing or directly (``prompt_style``; the default is the generator model's
  measured style, see bench/bench_generator.py);
- ``ape``: APE as the paper ran it (the black-box endpoint proposes instructions from the demos);
- ``ape_local``: APE sampling the local generator (same model and prompt as InstructZero, no soft prompt);
- ``manual``: one plain hand-written instruction per task (:data:`MANUAL`), the reference a person would write.

Tasks: built-in ones, and instruction-induction tasks imported (induce + execute merged, scored with ``contains``)
from ``--ii PATH`` (``../shared/data/instruction_induction`` here; the project ships none of that data). Tasks come
in two groups: ``tune`` (looked at while changing the method) and ``holdout`` (never looked at while tuning; their
numbers are reported separately, to catch changes that only fit the tuning tasks).

    .venv/bin/python bench/quality.py --ii ../shared/data/instruction_induction            # default size
    .venv/bin/python bench/quality.py --ii ... --group holdout                             # the held-out tasks
    .venv/bin/python bench/quality.py --ii ... --paper                                     # 25 + 5 x 25, dev 20
    .venv/bin/python bench/quality.py --tasks antonyms sentiment --seeds 0 --methods instructzero random
    .venv/bin/python bench/quality.py --ii ... --seeds 1 --reuse ape manual --with bench/results/OLD.json
        # rerun only the methods a change touches; the unchanged baselines' runs come from OLD.json (same models
        # and settings, checked), and the table's title says how many runs were taken from it
    .venv/bin/python bench/quality.py --ii ... --seeds 0 1 2 --reuse instructzero random ape ape_local manual \
        --with A.json B.json C.json    # no new runs: one table over seeds that were run apart

Prints per-task rows (test mean and spread over seeds, evaluations, paid calls, distinct instructions, seconds),
then summary rows (mean test per method, wins/ties/losses of InstructZero against each baseline, InstructZero's
mean difference to each with a 95% bootstrap interval over tasks, share of the manual score), and writes everything as JSON (``--json``; default ``bench/results/quality-<date>.json``) with the
date, machine, git commit, models and settings. Uses a throwaway IZ_HOME unless ``--home`` is given (a kept home
lets a rerun answer repeated instructions from the response cache, and ``--resume SWEEP_ID`` continue a stopped
benchmark); pulled models are found in the usual models folder (``iz models path NAME``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: One plain instruction per task, as a person would write it without any tuning.
MANUAL: dict[str, str] = {
    "antonyms": "Write a word that means the opposite of the input word.",
    "capital_city": "Write the capital city of the country.",
    "country_to_continent": "Write the continent the country is in.",
    "difference": "Subtract the second number from the first number and write the result.",
    "first_letter": "Write the first letter of the word.",
    "larger_animal": "Write the larger of the two animals.",
    "last_letter": "Write the last letter of the word.",
    "letter_count": "Count the letters in the word and write the number.",
    "number_to_words": "Write the number in English words.",
    "past_tense": "Write the past tense of the verb.",
    "second_letter": "Write the second letter of the word.",
    "sentiment": "Classify the sentiment of the sentence as positive or negative. Answer with one word.",
    "singular_to_plural": "Write the plural form of the noun.",
    "sum": "Add the two numbers and write the sum.",
    "uppercase": "Write the word in capital letters.",
    "word_sorting": "Sort the words alphabetically.",
    "ii_active_to_passive": "Rewrite the sentence in the passive voice.",
    "ii_cause_and_effect": "Of the two sentences, write the one that is the cause.",
    "ii_common_concept": "Write what all the listed things have in common.",
    "ii_informal_to_formal": "Rewrite the sentence in formal English.",
    "ii_negation": "Negate the sentence.",
    "ii_orthography_starts_with": "List the words of the sentence that start with the given letter.",
    "ii_rhymes": "Write a word that rhymes with the input word.",
    "ii_second_word_letter": "Write the second letter of the word.",
    "ii_synonyms": "Write a word with the same meaning as the input word.",
    "ii_taxonomy_animal": "List the animals among the words.",
    "ii_translation_en-fr": "Translate the English word into French.",
    "ii_translation_en-de": "Translate the English word into German.",
    "ii_word_unscrambling": "Unscramble the letters to make an English word.",
    "ii_object_counting": "Count the objects listed and write the number.",
    "ii_odd_one_out": "Write the word that does not belong with the others.",
    "ii_diff": "Subtract the second number from the first and write the result.",
}

#: Tasks looked at while tuning the method, and tasks kept out of it (reported on their own).
GROUPS: dict[str, list[str]] = {
    "tune": [
        "antonyms", "sentiment", "larger_animal", "singular_to_plural", "past_tense",
        "ii_cause_and_effect", "ii_negation", "ii_synonyms", "ii_translation_en-fr", "ii_informal_to_formal",
    ],
    "holdout": [
        "capital_city", "number_to_words", "first_letter", "country_to_continent",
        "ii_rhymes", "ii_word_unscrambling", "ii_active_to_passive", "ii_odd_one_out",
    ],
}

#: The runs each method name stands for (all other settings are the benchmark's).
VARIANTS: dict[str, dict[str, Any]] = {
    "instructzero": {"method": "instructzero"},
    "iz_matern": {"method": "instructzero", "kernel": "matern"},
    "iz_scale48": {"method": "instructzero", "soft_scale": 48},
    "iz_scale96": {"method": "instructzero", "soft_scale": 96},
    "random_scale96": {"method": "random", "soft_scale": 96},
    "iz_graded": {"method": "instructzero", "surrogate": "graded"},
    "iz_greedy": {"method": "instructzero", "resample_repeats": 0},
    "random_greedy": {"method": "random", "resample_repeats": 0},
    "iz_echo": {"method": "instructzero", "resample_echoes": True},
    "random_echo": {"method": "random", "resample_echoes": True},
    "random": {"method": "random"},
    "iz_paper": {"method": "instructzero", "prompt_style": "paper"},
    "iz_direct": {"method": "instructzero", "prompt_style": "direct"},
    "random_paper": {"method": "random", "prompt_style": "paper"},
    "ape_paper": {"method": "ape", "prompt_style": "paper"},
    "ape": {"method": "ape"},
    "ape_local": {"method": "ape_local"},
    "manual": {"method": "manual"},
}
BASELINES = ("random", "ape", "ape_local", "iz_matern", "manual", "random_scale96", "iz_greedy", "random_greedy",
             "random_echo")
DEFAULT_METHODS = ["instructzero", "random", "ape", "ape_local", "manual"]
#: A mean test score within this of another counts as a tie (one example of 20 is 0.05).
TIE = 0.02


# ---- tasks --------------------------------------------------------------------------------------------------


def ensure_ii_task(ii_root: Path, name: str) -> None:
    """Import an instruction-induction task (induce + execute merged) into the current IZ_HOME, once.

    Merging is deliberate: splits are drawn per seed from one pool, so demos, dev and test never overlap, and the
    test split is as large as the data allows. Scored with ``contains`` (a small black box answers in sentences;
    see the data's README).
    """
    from engine import paths
    from engine.tasks.importers import import_induce_execute

    if (paths.user_tasks_dir() / name).exists():
        return
    stem = name.removeprefix("ii_")
    induce, execute = (ii_root / part / f"{stem}.json" for part in ("induce", "execute"))
    if not (induce.is_file() and execute.is_file()):
        raise SystemExit(f"no instruction-induction files for {stem} under {ii_root} "
                         f"(expected induce/{stem}.json and execute/{stem}.json)")
    import_induce_execute(induce, execute, name=name, metric="contains", pooled=True,
                          description=f"Instruction-induction task {stem} (induce + execute), scored with contains")


# ---- running ------------------------------------------------------------------------------------------------


def run_all(tasks: list[str], methods: list[str], seeds: list[int], settings: dict[str, Any], log: Any, *,
            workers: int = 1, ray: str | None = None, resume: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run the grid as one sweep (`iz sweep`'s core: engine.sweep), on ``workers`` local worker processes or on
    Ray. Every cell is an ordinary run in the benchmark's history; a benchmark stopped midway is continued with
    ``--resume SWEEP_ID --home SAME_HOME`` (only unfinished cells run, paid answers come from the cache).
    Returns the sweep's id and one row per cell."""
    from engine.config import METHODS
    from engine.store import open_history
    from engine.sweep.driver import SweepDriver, SweepEvent
    from engine.sweep.spec import SweepSpec

    variants = {m: {"method": VARIANTS[m]["method"],
                    "settings": {k: v for k, v in VARIANTS[m].items() if k != "method"}}
                for m in methods if m not in METHODS}
    spec = SweepSpec.build(tasks=tasks, methods=methods, seeds=seeds, settings=settings, variants=variants,
                           instructions={t: [MANUAL[t]] for t in tasks if t in MANUAL})
    done = [0]

    def on_event(ev: SweepEvent) -> None:
        c = ev.cell
        if ev.kind == "sweep_started":
            print(f"sweep {ev.sweep_id}: {ev.data['todo']} of {ev.data['cells']} cells on {ev.data['workers']} "
                  f"{ev.data['backend']} workers", file=log, flush=True)
        elif c is not None and ev.kind in ("cell_finished", "cell_failed"):
            done[0] += 1
            what = (f"test {ev.data.get('test_score')} dev {ev.data.get('dev_score')} evals "
                    f"{ev.data.get('evaluations')} calls {ev.data.get('calls')} ({ev.data.get('seconds') or 0:.0f} s) "
                    f"{ev.data.get('best_instruction')!r}") if ev.kind == "cell_finished" else f"FAILED {c['error']}"
            print(f"[{done[0]}] {c['task']:<24} {c['method']:<12} seed {c['seed']}: {what}", file=log, flush=True)
        elif c is not None and ev.kind == "worker_died":
            print(f"worker died ({ev.data['problem']}); retry: {ev.data['retry']}", file=log, flush=True)

    driver = SweepDriver(workers=workers, ray=ray, on_event=on_event)
    sweep_id = resume if resume is not None else driver.create(spec)
    result = driver.run(sweep_id)
    h = open_history()
    rows: list[dict[str, Any]] = []
    for c in result["cells"]:
        base = {"task": c["task"], "method": c["method"], "seed": c["seed"], "run_id": c["run_id"]}
        if c["status"] != "finished":
            rows.append({**base, "failed": c["error"] or c["status"]})
            continue
        cands = h.candidates(c["run_id"])
        run = h.run(c["run_id"])
        rows.append({**base, "engine_method": run["method"], "test_score": c["test_score"],
                     "dev_score": c["dev_score"], "evaluations": c["evaluations"], "calls": c["calls"],
                     "calls_saved": c["calls_saved"], "best_instruction": c["best_instruction"],
                     "wall_s": round(c["seconds"] or 0.0, 2), "distinct": len({x["instruction"] for x in cands}),
                     "candidates": len(cands)})
    h.close()
    return sweep_id, rows


# ---- tables -------------------------------------------------------------------------------------------------


def _mean_sd(vals: list[float]) -> tuple[float, float]:
    if not vals:
        return float("nan"), float("nan")
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]], methods: list[str], tasks: list[str],
              ref: str = "instructzero") -> dict[str, Any]:
    """Per-task means and spreads, and the summary rows, as data (the table is printed from this).

    ``ref``: the method the wins/ties/losses and the differences are counted for (InstructZero, or a variant of
    it being judged against the baselines)."""
    ok = [r for r in rows if "failed" not in r]
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    for task in tasks:
        per_task[task] = {}
        for m in methods:
            rs = [r for r in ok if r["task"] == task and r["method"] == m]
            if not rs:
                continue
            test_mean, test_sd = _mean_sd([r["test_score"] or 0.0 for r in rs])
            per_task[task][m] = {
                "test": test_mean, "test_sd": test_sd, "n": len(rs),
                "dev": statistics.mean([r["dev_score"] or 0.0 for r in rs]),
                "evaluations": statistics.mean([r["evaluations"] or 0 for r in rs]),
                "calls": statistics.mean([r["calls"] or 0 for r in rs]),
                "distinct": statistics.mean([r["distinct"] for r in rs]),
                "seconds": statistics.mean([r["wall_s"] for r in rs]),
            }
    means = {m: statistics.mean([per_task[t][m]["test"] for t in tasks if m in per_task[t]])
             for m in methods if any(m in per_task[t] for t in tasks)}
    wtl: dict[str, list[int]] = {}
    if ref in methods:
        for b in methods:
            if b == ref:
                continue
            w = t_ = lo = 0
            for task in tasks:
                if ref not in per_task[task] or b not in per_task[task]:
                    continue
                diff = per_task[task][ref]["test"] - per_task[task][b]["test"]
                if diff > TIE:
                    w += 1
                elif diff < -TIE:
                    lo += 1
                else:
                    t_ += 1
            wtl[b] = [w, t_, lo]
    share = {}
    if "manual" in means and means["manual"] > 0:
        share = {m: v / means["manual"] for m, v in means.items()}
    diff_ci = {b: paired_ci(per_task, tasks, ref, b) for b in wtl}
    return {"per_task": per_task, "mean_test": means, "wins_ties_losses": wtl, "share_of_manual": share,
            "iz_minus_ci95": diff_ci, "reference": ref}


def paired_ci(per_task: dict[str, dict[str, dict[str, float]]], tasks: list[str], a: str, b: str,
              n_boot: int = 10_000, seed: int = 0) -> list[float] | None:
    """Mean over tasks of (a's test - b's test), with a 95% percentile-bootstrap interval that resamples *tasks*
    (seeds of one task are not independent draws of the method's quality, so they are averaged first).

    Why: with 10 tasks and a handful of seeds a difference of a few hundredths is easily luck; the interval says
    whether a mean difference is distinguishable from zero on these tasks, which the wins/ties/losses alone do not.
    """
    import random as _random

    diffs = [per_task[t][a]["test"] - per_task[t][b]["test"] for t in tasks
             if a in per_task[t] and b in per_task[t]]
    if len(diffs) < 2:
        return None
    rng = _random.Random(seed)
    boots = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(n_boot))
    return [statistics.fmean(diffs), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]]


def render(summary: dict[str, Any], methods: list[str], tasks: list[str], title: str) -> str:
    per_task = summary["per_task"]
    width = 13
    lines = [title, ""]
    lines.append(f"{'task':<26}" + "".join(f"{m:>{width}}" for m in methods))
    for task in tasks:
        cells = []
        for m in methods:
            c = per_task[task].get(m)
            cells.append(f"{c['test']:.2f}±{c['test_sd']:.2f}".rjust(width) if c else "-".rjust(width))
        lines.append(f"{task:<26}" + "".join(cells))
    lines.append("")
    lines.append(f"{'(per method, mean over tasks)':<26}" + "".join(f"{m:>{width}}" for m in methods))
    for key, fmt in (("evaluations", "{:.1f}"), ("calls", "{:.0f}"), ("distinct", "{:.1f}"), ("seconds", "{:.0f}")):
        vals = []
        for m in methods:
            xs = [per_task[t][m][key] for t in tasks if m in per_task[t]]
            vals.append(fmt.format(statistics.mean(xs)).rjust(width) if xs else "-".rjust(width))
        lines.append(f"{key:<26}" + "".join(vals))
    lines.append(f"{'MEAN TEST':<26}" + "".join(
        (f"{summary['mean_test'][m]:.3f}" if m in summary["mean_test"] else "-").rjust(width) for m in methods))
    if summary["share_of_manual"]:
        lines.append(f"{'share of manual':<26}" + "".join(
            (f"{summary['share_of_manual'][m]:.0%}" if m in summary["share_of_manual"] else "-").rjust(width)
            for m in methods))
    ref = summary.get("reference", "instructzero")[:12]  # results written before --reference have none
    if summary["wins_ties_losses"]:
        lines.append(f"{ref + ' W/T/L vs':<26}" + "".join(
            ("/".join(map(str, summary["wins_ties_losses"][m])) if m in summary["wins_ties_losses"] else "")
            .rjust(width) for m in methods))
    cis = summary.get("iz_minus_ci95") or {}
    if any(cis.values()):
        lines.append(f"{ref + ' minus method':<26}" + "".join(
            (f"{cis[m][0]:+.3f}" if cis.get(m) else "").rjust(width) for m in methods))
        lines.append(f"{'  95% CI over tasks':<26}" + "".join(
            (f"{cis[m][1]:+.2f}..{cis[m][2]:+.2f}" if cis.get(m) else "").rjust(width) for m in methods))
    return "\n".join(lines)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ii", type=Path, help="the instruction-induction data folder (with induce/ and execute/)")
    ap.add_argument("--group", choices=["tune", "holdout", "all"], default="tune")
    ap.add_argument("--tasks", nargs="+", help="explicit task names (overrides --group)")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    # The size measured in BENCHMARKS.md. On 2 CPU cores with the default 1.5B black box one seed of the five
    # default methods on the ten tune tasks took 52 minutes, so the three default seeds need about 2.5 hours.
    ap.add_argument("--budget", type=int, default=6, help="evaluations per run (default 6 = 3 + 1 x 3)")
    ap.add_argument("--init", type=int, default=3)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--dev", type=int, default=4)
    ap.add_argument("--test", type=int, default=10)
    ap.add_argument("--paper", action="store_true", help="the paper's size: 25 + 5 x 25 evaluations, dev 20, test 100")
    ap.add_argument("--generator", help="generator model (catalog name or path; default: the product's default)")
    ap.add_argument("--blackbox", help="embedded black-box model (catalog name or .gguf; default: the product's)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra run settings for every run, e.g. kernel=matern (values read as JSON)")
    ap.add_argument("--home", help="IZ_HOME to use (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="where to write the JSON results")
    ap.add_argument("--workers", type=int, default=1,
                    help="sweep workers (local processes; each loads its own generator and embedded server)")
    ap.add_argument("--ray", metavar="local|auto|ADDRESS", help="run the sweep's workers on Ray")
    ap.add_argument("--resume", type=int, metavar="SWEEP_ID",
                    help="continue a stopped benchmark (needs the same --home): only unfinished cells run")
    ap.add_argument("--with", dest="merge", type=Path, nargs="*", default=[], metavar="JSON",
                    help="earlier results of the same benchmark (models and settings are checked) to take the "
                         "--reuse methods' runs from")
    ap.add_argument("--reference", default="instructzero", choices=list(VARIANTS),
                    help="the method the wins/ties/losses and differences are counted for (default instructzero)")
    ap.add_argument("--reuse", nargs="*", default=[], metavar="METHOD",
                    help="methods (of --methods) not run again but taken from the --with results: baselines the "
                         "change under test does not touch; the table's title says so")
    args = ap.parse_args()
    if args.resume is not None and not args.home:
        raise SystemExit("--resume needs the --home of the stopped benchmark (its history holds the sweep)")

    if args.paper:
        args.budget, args.init, args.batch, args.dev, args.test = 150, 25, 25, 20, 100
    from engine import paths

    os.environ.setdefault("IZ_MODELS", str(paths.models_dir()))  # find pulled models from a throwaway home
    os.environ.setdefault("IZ_CACHE", str(paths.cache_dir()))  # and the generator's cache (a GB per model)
    os.environ["IZ_HOME"] = args.home or tempfile.mkdtemp(prefix="iz-quality-")
    os.environ["IZ_CONFIG"] = str(Path(os.environ["IZ_HOME"]) / "config.toml")
    if args.generator:
        os.environ["IZ_GENERATOR__MODEL"] = args.generator
    if args.blackbox:
        os.environ["IZ_ENDPOINTS__EMBEDDED__MODEL"] = args.blackbox

    tasks = args.tasks or (GROUPS["tune"] + GROUPS["holdout"] if args.group == "all" else GROUPS[args.group])
    for task in tasks:
        if task.startswith("ii_"):
            if not args.ii:
                raise SystemExit(f"{task} is an instruction-induction task: pass --ii PATH (or leave it out)")
            ensure_ii_task(args.ii.expanduser().resolve(), task)
        if "manual" in args.methods and task not in MANUAL:
            raise SystemExit(f"no manual instruction for {task}: add one to MANUAL in {__file__}")

    rest = max(args.budget - args.init, 0)
    settings: dict[str, Any] = {
        "budget_evaluations": args.budget, "n_init": args.init, "batch_size": args.batch,
        "n_iterations": -(-rest // args.batch) if args.batch else 0, "n_dev": args.dev, "n_test": args.test,
    }
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value

    from engine.config import load_config
    from engine.generator_setup import generator_spec

    config = load_config()
    gen_path, gen_name = generator_spec(config.generator)
    blackbox = config.endpoints["embedded"].model
    print(f"quality benchmark: {len(tasks)} tasks x {len(args.methods)} methods x {len(args.seeds)} seeds; "
          f"generator {gen_name or gen_path}, black box {blackbox}; settings {settings}", file=sys.stderr)
    t0 = time.perf_counter()
    out = args.json or ROOT / "bench" / "results" / f"quality-{dt.date.today().isoformat()}-{args.group}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if set(args.reuse) - set(args.methods) or (args.reuse and not args.merge):
        raise SystemExit("--reuse takes methods of --methods, and needs --with JSON to take them from")
    run_methods = [m for m in args.methods if m not in args.reuse]
    sweep_id: int | None = None
    rows: list[dict[str, Any]] = []
    if run_methods:  # every method reused: only a table of earlier results (e.g. seeds run apart, put together)
        sweep_id, rows = run_all(tasks, run_methods, args.seeds, settings, sys.stderr, workers=args.workers,
                                 ray=args.ray, resume=args.resume)
    wall = time.perf_counter() - t0
    # The workers and the llama.cpp servers they started have exited and been waited for: the largest of them.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    merged: dict[str, int] = {}
    for path in args.merge:
        extra = json.loads(path.read_text(encoding="utf-8"))
        theirs = {k: extra["settings"].get(k) for k in settings}
        if theirs != settings or extra["models"] != {"generator": gen_name or gen_path, "blackbox": blackbox}:
            raise SystemExit(f"{path}: other models or settings ({extra['models']}, {extra['settings']}); "
                             "only results of the same benchmark can be merged")
        have = {(r["task"], r["method"], r["seed"]) for r in rows}
        take = [r for r in extra["runs"] if r["task"] in tasks and r["method"] in args.reuse
                and r["seed"] in args.seeds and (r["task"], r["method"], r["seed"]) not in have]
        rows += [{**r, "from": path.name} for r in take]
        merged[path.name] = len(take)
    summary = summarise(rows, args.methods, tasks, ref=args.reference)
    title = (f"test score (mean±sd over seeds {args.seeds}); budget {args.budget} evaluations "
             f"({args.init} initial + batches of {args.batch}), dev {args.dev}, test {args.test}; "
             f"generator {gen_name or gen_path}, black box {blackbox}; "
             + (f"{wall / 60:.1f} min, peak RSS {peak_rss_mb:.0f} MB (largest process)" if run_methods
                else "no new runs"))
    if merged:
        title += "; runs merged from " + ", ".join(f"{n} ({k} runs)" for n, k in merged.items())
    print(render(summary, args.methods, tasks, title))
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()},
        "commit": git_commit(),
        "models": {"generator": gen_name or gen_path, "blackbox": blackbox},
        "settings": settings, "methods": args.methods, "seeds": args.seeds, "tasks": tasks, "group": args.group,
        "wall_s": round(wall, 1), "peak_rss_mb": round(peak_rss_mb), "summary": summary, "runs": rows,
        "sweep": {"id": sweep_id, "home": os.environ["IZ_HOME"], "workers": args.workers, "ray": args.ray},
        "merged_from": merged,
    }
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
