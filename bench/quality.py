"""The quality benchmark: does a method find better instructions than its baselines at an equal budget?

Every method gets the same black-box budget (evaluations of ``--dev`` examples each, with racing as the engine
does it) on the same task, seed and splits, through the real engine core and the real models; the winner of each
run (best dev score) is scored on the held-out test split. The design is paired: differences between methods are
taken task by task and seed by seed, and reported with 95% two-level bootstrap intervals (bench/quality_report.py).

Size (the defaults): 12 instruction-induction tasks (6 ``tune``, looked at while changing methods; 6 ``holdout``,
never looked at, reported apart) x 3 seeds, 10 evaluations (4 Sobol + 2 x 3 BO), dev 10, test 30. Each task is
scored with the metric of the original evaluation (APE / InstructZero): exact match for most, contains for
synonyms, exact set for orthography_starts_with and taxonomy_animal (F1 is the original metric of common_concept and
informal_to_formal, left out because they hold 33 and 30 examples: too few for 5 demos + 10 dev + 30 test). Every
winner's test answers are also scored with ``contains`` (the old, lenient metric) from the stored outputs, without
new calls, so the change of metric is visible in one table.

Methods (``--methods``; the grid runs as one sweep per part, `iz sweep`'s core):

- ``instructzero``: soft prompts -> local generator -> instructions, chosen by BO (the paper's method);
- ``random``: random soft prompts, the paper's "Uniform" baseline;
- ``ape``: APE as the paper ran it (the black-box endpoint proposes instructions from the demos);
- ``ape_local``: APE sampling the local generator (same model and prompt as InstructZero, no soft prompt);
- ``opro``: the black box reads the scored instructions so far and writes better ones (OPRO; not yet a default);
- ``instinct``: a pool of soft prompts decoded once, a neural bandit over what the instructions say (INSTINCT; not
  yet a default);
- ``manual``: one plain hand-written instruction per task (:data:`MANUAL`), the reference a person would write;
- ``dspy_gepa``: what a prompt engineer would use instead: DSPy's GEPA optimising the instruction against the
  same endpoint, capped at the same dev calls (``budget x dev``) counted at the endpoint, its winner scored like
  every other (bench/quality_dspy.py; an optional extra the product never imports: ``pip install -e '.[dspy]'``);
- ablations and older variants (``iz_matern``, ``iz_graded``, ``iz_paper``, ...: :data:`VARIANTS`), not run by
  default.

Parts: the results of each group and seed are one JSON file (``bench/results/quality-v2/<group>-seed<N>.json``),
written after every finished cell, so a benchmark spread over several sittings goes on where it stopped:

    .venv/bin/python bench/quality.py --ii ../shared/data/instruction_induction --group tune --seeds 0
    .venv/bin/python bench/quality.py --ii ... --group tune --seeds 0 --resume      # only the cells it lacks
    .venv/bin/python bench/quality.py --ii ... --group holdout --seeds 0 1 2 --resume
    .venv/bin/python bench/quality.py --table          # every committed part: the top page's table (markdown)
    .venv/bin/python bench/quality.py --tasks antonyms sentiment --seeds 0 --methods instructzero random \
        --out /tmp/q     # an ad-hoc grid (built-in tasks are scored with their own metric)

Prints per-task rows (test mean and spread over seeds, evaluations, paid calls, distinct instructions, seconds) and
summary rows (each method's mean, the same answers under ``contains``, the share of manual, the difference to random
and to APE with 95% intervals, the resolvable difference: the median half-width of those intervals). Every part
records the date, machine, git commit, models, settings and the wall time of each sitting. Uses a throwaway IZ_HOME
unless ``--home`` is given; pulled models are found in the usual models folder (``iz models path NAME``).
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
from collections.abc import Callable
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
    "ii_antonyms": "Write a word that means the opposite of the input word.",
    "ii_larger_animal": "Write the larger of the two animals.",
    "ii_sentiment": "Classify the sentiment of the sentence as positive or negative. Answer with one word.",
}

#: Tasks looked at while changing a method, and tasks kept out of it (reported on their own). All are
#: instruction-induction tasks with at least 45 examples (5 demos + 10 dev + 30 test), scored with the original
#: metric. The held-out six were never in a group a method was tuned on (the older held-out group's built-in tasks
#: and its near-ceiling ii_active_to_passive made way for three tasks no earlier benchmark ran).
GROUPS: dict[str, list[str]] = {
    "tune": ["ii_antonyms", "ii_cause_and_effect", "ii_negation", "ii_synonyms", "ii_larger_animal",
             "ii_translation_en-fr"],
    "holdout": ["ii_rhymes", "ii_word_unscrambling", "ii_odd_one_out", "ii_taxonomy_animal",
                "ii_orthography_starts_with", "ii_second_word_letter"],
}
GROUP_LABELS = {"tune": "tune (6 tasks)", "holdout": "held-out (6 tasks)", "all": "all 12 tasks"}
RESULTS = ROOT / "bench" / "results" / "quality-v2"

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
    "opro": {"method": "opro"},
    "instinct": {"method": "instinct"},
    "ape_local": {"method": "ape_local"},
    "manual": {"method": "manual"},
}
#: Not an engine method: DSPy's GEPA, run in this process by bench/quality_dspy.py (optional extra).
DSPY = "dspy_gepa"
DEFAULT_METHODS = ["instructzero", "random", "ape", "ape_local", "manual", DSPY]


# ---- tasks --------------------------------------------------------------------------------------------------


def ensure_ii_task(ii_root: Path, name: str, metric: str | None = None) -> None:
    """Import an instruction-induction task (induce + execute merged) into the current IZ_HOME, once.

    Merging is deliberate: splits are drawn per seed from one pool, so demos, dev and test never overlap, and the
    test split is as large as the data allows. ``metric`` None: the original evaluation's metric for the task
    (:func:`engine.tasks.importers.paper_metric`); ``contains`` reproduces the benchmark before 2026-12-08.
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
    from engine.tasks.importers import paper_metric

    metric = metric or paper_metric(stem)
    import_induce_execute(induce, execute, name=name, metric=metric, pooled=True,
                          description=f"Instruction-induction task {stem} (induce + execute), scored with {metric}")


# ---- running ------------------------------------------------------------------------------------------------


def finished_row(h: Any, cell: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """One result row for a finished cell: the run's summary, what the history adds (distinct instructions), and
    the winner's test answers scored again with ``contains`` (from the stored outputs: no new call)."""
    from engine.tasks.loader import load_task
    from engine.tasks.metrics import contains

    cands = h.candidates(cell["run_id"])
    best = summary.get("best_instruction")
    case = load_task(cell["task"]).case_sensitive
    test_contains = None
    for c in cands:
        outs = h.outputs(c["id"], "test") if c["instruction"] == best else []
        if outs:
            test_contains = statistics.fmean(contains(o["output"] or "", o["answers"], case) for o in outs)
            break
    return {"task": cell["task"], "method": cell["method"], "seed": cell["seed"], "run_id": cell["run_id"],
            "engine_method": h.run(cell["run_id"])["method"], "test_score": summary.get("test_score"),
            "test_contains": test_contains, "dev_score": summary.get("dev_score"),
            "evaluations": summary.get("evaluations"), "calls": summary.get("calls"),
            "calls_saved": summary.get("calls_saved"), "best_instruction": best,
            "wall_s": round(summary.get("seconds") or 0.0, 2), "distinct": len({x["instruction"] for x in cands}),
            "candidates": len(cands)}


def run_sweep(tasks: list[str], methods: list[str], seed: int, settings: dict[str, Any],
              on_row: Callable[[dict[str, Any]], None], *, workers: int = 1, ray: str | None = None) -> None:
    """Run tasks x methods for one seed as one sweep (`iz sweep`'s core: engine.sweep) on ``workers`` local
    processes or on Ray; ``on_row`` gets each cell's row as soon as it finishes (or fails)."""
    from engine.methods import METHODS
    from engine.store import open_history
    from engine.sweep.driver import SweepDriver, SweepEvent
    from engine.sweep.spec import SweepSpec

    variants = {m: {"method": VARIANTS[m]["method"],
                    "settings": {k: v for k, v in VARIANTS[m].items() if k != "method"}}
                for m in methods if m not in METHODS}
    spec = SweepSpec.build(tasks=tasks, methods=methods, seeds=[seed], settings=settings, variants=variants,
                           instructions={t: [MANUAL[t]] for t in tasks if t in MANUAL})
    h = open_history()

    def on_event(ev: SweepEvent) -> None:
        c = ev.cell
        if ev.kind == "sweep_started":
            print(f"sweep {ev.sweep_id}: {ev.data['todo']} cells on {ev.data['workers']} {ev.data['backend']} "
                  "workers", file=sys.stderr, flush=True)
        elif c is not None and ev.kind == "cell_finished":
            on_row(finished_row(h, c, ev.data or {}))
        elif c is not None and ev.kind == "cell_failed":
            on_row({"task": c["task"], "method": c["method"], "seed": c["seed"], "run_id": c.get("run_id"),
                    "failed": c.get("error") or "failed"})
        elif ev.kind == "worker_died":
            print(f"worker died ({ev.data['problem']}); retry: {ev.data['retry']}", file=sys.stderr, flush=True)

    driver = SweepDriver(workers=workers, ray=ray, on_event=on_event)
    try:
        driver.run(driver.create(spec))
    finally:
        h.close()


def run_dspy(tasks: list[str], seed: int, settings: dict[str, Any], on_row: Callable[[dict[str, Any]], None],
             blackbox: str | None) -> None:
    """DSPy's GEPA on each task, in this process (bench/quality_dspy.py), capped at the dev calls every engine
    method may spend: budget x dev examples."""
    try:
        from bench.quality_dspy import run_gepa_cell
    except ImportError as exc:  # the module imports dspy lazily; this is a broken checkout
        raise SystemExit(f"bench/quality_dspy.py cannot be imported: {exc}") from exc
    cap = settings["budget_evaluations"] * settings["n_dev"]
    for task in tasks:
        try:
            on_row(run_gepa_cell(task, seed, settings, blackbox=blackbox, max_calls=cap, log=sys.stderr))
        except SystemExit:
            raise
        except Exception as exc:  # one failed cell is a row that says so, not a lost part
            on_row({"task": task, "method": DSPY, "seed": seed, "failed": f"{type(exc).__name__}: {exc}"})


def dspy_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("dspy", "gepa"))


# ---- parts --------------------------------------------------------------------------------------------------


def part_path(folder: Path, group: str, seed: int) -> Path:
    return folder / f"{group}-seed{seed}.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, so a benchmark killed mid-write leaves the previous state of the part, never half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_part(path: Path, meta: dict[str, Any], tasks: list[str], methods: list[str], seed: int,
             args: argparse.Namespace) -> dict[str, Any]:
    """Run (or, with ``--resume``, finish) one part: ``tasks`` x ``methods`` for one seed. The part's JSON is
    rewritten after every finished cell; a resumed part runs only the (task, method) cells it has no finished row
    for, and must have been made with the same models and settings."""
    if path.exists():
        if not args.resume:
            raise SystemExit(f"{path} exists: pass --resume to run only the cells it lacks, or --out ANOTHER_FOLDER")
        part = json.loads(path.read_text(encoding="utf-8"))
        for key in ("models", "settings", "metric"):
            if part.get(key) != meta[key]:
                raise SystemExit(f"{path} was made with other {key} ({part.get(key)} here {meta[key]}): "
                                 "only the same benchmark can be resumed")
    else:
        part = {**meta, "seed": seed, "tasks": tasks, "methods": [], "runs": [], "sittings": []}
    part["tasks"] = list(dict.fromkeys([*part["tasks"], *tasks]))
    part["methods"] = list(dict.fromkeys([*part["methods"], *methods]))
    done = {(r["task"], r["method"]) for r in part["runs"] if "failed" not in r}
    part["runs"] = [r for r in part["runs"] if "failed" not in r]  # a failed cell is run again
    todo = [m for m in methods if any((t, m) not in done for t in tasks)]
    if not todo:
        print(f"{path.name}: complete ({len(done)} cells)", file=sys.stderr)
        return part
    t0 = time.perf_counter()
    todo_tasks = [t for t in tasks if any((t, m) not in done for m in todo)]
    print(f"{path.name}: {len(todo_tasks)} tasks x {todo} (seed {seed})", file=sys.stderr, flush=True)

    def on_row(row: dict[str, Any]) -> None:
        if (row["task"], row["method"]) in done:
            return  # a cell of the grid this part already has (the sweep runs whole rows of tasks x methods)
        part["runs"] = [r for r in part["runs"] if (r["task"], r["method"]) != (row["task"], row["method"])]
        part["runs"].append(row)
        what = (f"FAILED {row['failed']}" if "failed" in row else
                f"test {row['test_score']} (contains {row['test_contains']}) dev {row['dev_score']} calls "
                f"{row['calls']} {row['wall_s']:.0f} s {row['best_instruction']!r}")
        print(f"[{len(part['runs'])}] {row['task']:<26} {row['method']:<12} seed {seed}: {what}", file=sys.stderr,
              flush=True)
        write_json(path, part)

    sitting = {"date": meta["date"], "commit": meta["commit"], "methods": todo, "tasks": todo_tasks}
    part.setdefault("sittings", []).append(sitting)
    # One sweep per set of tasks the methods lack (a grid of tasks x methods), so no finished cell runs again.
    grids: dict[tuple[str, ...], list[str]] = {}
    for m in todo:
        if m != DSPY:
            grids.setdefault(tuple(t for t in tasks if (t, m) not in done), []).append(m)
    for grid_tasks, grid_methods in grids.items():
        run_sweep(list(grid_tasks), grid_methods, seed, meta["settings"], on_row, workers=args.workers,
                  ray=args.ray)
    if DSPY in todo:
        run_dspy([t for t in todo_tasks if (t, DSPY) not in done], seed, meta["settings"], on_row,
                 meta["models"]["blackbox"])
    sitting["wall_s"] = round(time.perf_counter() - t0, 1)
    sitting["cells"] = sum(1 for t in todo_tasks for m in todo if (t, m) not in done)
    write_json(path, part)
    return part


def load_parts(folder: Path) -> list[dict[str, Any]]:
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*-seed*.json"))]
    if not parts:
        raise SystemExit(f"no parts under {folder}: run the benchmark first (see --help)")
    return parts


def print_table(folder: Path, methods: list[str]) -> dict[str, Any]:
    """The table over every part in ``folder``: per group and over all tasks, as text and as the markdown of the
    top page; written to ``folder/summary.json``."""
    from bench.quality_report import markdown, render, summarise

    parts = load_parts(folder)
    by_group: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        by_group.setdefault(part["group"], []).append(part)
    summaries: dict[str, dict[str, Any]] = {}
    all_rows: list[dict[str, Any]] = []
    all_tasks: list[str] = []
    have = [m for m in methods if any(r["method"] == m for p in parts for r in p["runs"])]
    for group, ps in by_group.items():
        rows = [r for p in ps for r in p["runs"]]
        tasks = list(dict.fromkeys(t for p in ps for t in p["tasks"]))
        all_rows += rows
        all_tasks += [t for t in tasks if t not in all_tasks]
        summaries[group] = summarise(rows, have, tasks)
        seeds = sorted(p["seed"] for p in ps)
        wall = sum(s.get("wall_s", 0) for p in ps for s in p.get("sittings", []))
        print(render(summaries[group], have, tasks, f"{GROUP_LABELS.get(group, group)}: seeds {seeds}, "
                     f"{wall / 60:.0f} min of runs; settings {ps[0]['settings']}; models {ps[0]['models']}"))
        print()
    if len(by_group) > 1:
        summaries["all"] = summarise(all_rows, have, all_tasks)
    md = markdown(summaries, have, GROUP_LABELS)
    print(md)
    write_json(folder / "summary.json", {"groups": summaries, "parts": [
        {k: p.get(k) for k in ("group", "seed", "date", "commit", "sittings")} for p in parts]})
    return summaries


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ii", type=Path, help="the instruction-induction data folder (with induce/ and execute/)")
    ap.add_argument("--group", choices=["tune", "holdout", "all"], default="tune")
    ap.add_argument("--tasks", nargs="+", help="explicit task names (overrides --group; the part is named 'custom')")
    ap.add_argument("--methods", nargs="+", default=None, choices=[*VARIANTS, DSPY],
                    help=f"default: {' '.join(DEFAULT_METHODS)} ({DSPY} only when the dspy extra is installed)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=10, help="evaluations per run (default 10 = 4 + 2 x 3)")
    ap.add_argument("--init", type=int, default=4)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--dev", type=int, default=10)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--metric", choices=["original", "contains"], default="original",
                    help="how instruction-induction tasks are scored: the original evaluation's metric per task "
                         "(default) or contains for all (the benchmark before 2026-12-08)")
    ap.add_argument("--paper", action="store_true", help="the paper's size: 25 + 5 x 25 evaluations, dev 20, test 100")
    ap.add_argument("--generator", help="generator model (catalog name or path; default: the product's default)")
    ap.add_argument("--blackbox", help="embedded black-box model (catalog name or .gguf; default: the product's)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra run settings for every run, e.g. kernel=matern (values read as JSON)")
    ap.add_argument("--home", help="IZ_HOME to use (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"folder of the part files (default {RESULTS})")
    ap.add_argument("--workers", type=int, default=1,
                    help="sweep workers (local processes; each loads its own generator and embedded server)")
    ap.add_argument("--ray", metavar="local|auto|ADDRESS", help="run the sweep's workers on Ray")
    ap.add_argument("--resume", action="store_true",
                    help="continue parts already in --out: run only the (task, method) cells they lack")
    ap.add_argument("--table", action="store_true", help="no runs: the table over every part in --out")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    methods = args.methods or [m for m in DEFAULT_METHODS if m != DSPY or dspy_available()]
    if args.methods is None and DSPY not in methods:
        print(f"note: {DSPY} left out: install the optional extra (.venv/bin/pip install -e '.[dspy]')",
              file=sys.stderr)
    if DSPY in methods and not dspy_available():
        raise SystemExit(f"{DSPY} needs DSPy and GEPA: .venv/bin/pip install -e '.[dspy]'")
    if args.table:
        print_table(args.out, [*dict.fromkeys([*methods, *DEFAULT_METHODS, *VARIANTS])])
        return
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

    groups = {"custom": args.tasks} if args.tasks else (
        GROUPS if args.group == "all" else {args.group: GROUPS[args.group]})
    for tasks in groups.values():
        for task in tasks:
            if task.startswith("ii_"):
                if not args.ii:
                    raise SystemExit(f"{task} is an instruction-induction task: pass --ii PATH (or leave it out)")
                ensure_ii_task(args.ii.expanduser().resolve(), task,
                               "contains" if args.metric == "contains" else None)
            if "manual" in methods and task not in MANUAL:
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
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()},
        "commit": git_commit(), "models": {"generator": gen_name or gen_path,
                                           "blackbox": config.endpoints["embedded"].model},
        "settings": settings, "metric": args.metric,
    }
    print(f"quality benchmark: {sum(map(len, groups.values()))} tasks x {len(methods)} methods x "
          f"{len(args.seeds)} seeds; {meta['models']}; settings {settings}; metric {args.metric}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    for group, tasks in groups.items():
        for seed in args.seeds:
            path = part_path(args.out, group, seed)
            part = run_part(path, {**meta, "group": group}, tasks, methods, seed, args)
            from bench.quality_report import render, summarise

            print(render(summarise(part["runs"], part["methods"], part["tasks"]), part["methods"], part["tasks"],
                         f"{group}, seed {seed}: {path}"))
    # The workers and the llama.cpp servers they started have exited and been waited for: the largest of them.
    print(f"peak RSS of the largest child: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
