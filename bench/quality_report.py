"""The quality benchmark's statistics and tables (bench/quality.py runs the grid; this turns its rows into numbers).

Why a module of its own: the same summary is built for one part just run (a group and a seed), for the table over
every committed part (``bench/quality.py --table``), and for the markdown that goes on top of BENCHMARKS.md, and
none of it needs the engine.

The design is paired: every method of a part runs on the same tasks, seeds and splits, so a difference between two
methods is computed task by task and seed by seed before anything is averaged. Intervals come from a two-level
bootstrap (tasks, then seeds within each drawn task), because both the choice of tasks and the luck of a seed move a
method's mean; resampling only tasks would hide the second, resampling rows would pretend 36 runs are 36 tasks.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable
from typing import Any

#: A mean test score within this of another counts as a tie in the wins/ties/losses (one example of 30 is 0.033).
TIE = 0.02
#: The baselines every method's difference is reported against on the top page.
ANCHORS = ("random", "ape")
N_BOOT = 10_000

Rows = list[dict[str, Any]]


def by_task_seed(rows: Rows, key: str = "test_score") -> dict[str, dict[str, dict[int, float]]]:
    """``{method: {task: {seed: value}}}`` over finished rows (a failed cell is missing, never a zero)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for r in rows:
        if "failed" in r or r.get(key) is None:
            continue
        out.setdefault(r["method"], {}).setdefault(r["task"], {})[int(r["seed"])] = float(r[key])
    return out


def _task_means(cells: dict[str, dict[int, float]], tasks: Iterable[str]) -> dict[str, float]:
    return {t: statistics.fmean(cells[t].values()) for t in tasks if cells.get(t)}


def paired_diffs(table: dict[str, dict[str, dict[int, float]]], a: str, b: str,
                 tasks: Iterable[str]) -> dict[str, list[float]]:
    """Per task, a's score minus b's on each seed both have (the pairing: same task, seed and splits)."""
    out: dict[str, list[float]] = {}
    ta, tb = table.get(a, {}), table.get(b, {})
    for t in tasks:
        seeds = sorted(set(ta.get(t, {})) & set(tb.get(t, {})))
        if seeds:
            out[t] = [ta[t][s] - tb[t][s] for s in seeds]
    return out


def bootstrap_ci(diffs: dict[str, list[float]], n_boot: int = N_BOOT, seed: int = 0) -> list[float] | None:
    """Mean over tasks of the seed-averaged difference, and its 95% two-level percentile-bootstrap interval.

    Returns ``[mean, low, high]``, or None with fewer than two tasks (no interval can be drawn from one)."""
    if len(diffs) < 2:
        return None
    rng = random.Random(seed)
    per_task = list(diffs.values())
    point = statistics.fmean(statistics.fmean(d) for d in per_task)
    boots = []
    for _ in range(n_boot):
        drawn = rng.choices(per_task, k=len(per_task))
        boots.append(statistics.fmean(statistics.fmean(rng.choices(d, k=len(d))) for d in drawn))
    boots.sort()
    return [point, boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]]


def summarise(rows: Rows, methods: list[str], tasks: list[str], ref: str = "instructzero") -> dict[str, Any]:
    """Everything the tables print, as data: per-task means and spreads, each method's mean, differences to the
    anchors (random, APE) and to ``ref`` with intervals, wins/ties/losses of ``ref``, share of manual, and the
    resolvable difference (the median half-width of the intervals to the anchors)."""
    ok = [r for r in rows if "failed" not in r]
    table = by_task_seed(ok)
    contains_table = by_task_seed(ok, "test_contains")
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    for task in tasks:
        per_task[task] = {}
        for m in methods:
            rs = [r for r in ok if r["task"] == task and r["method"] == m]
            if not rs:
                continue
            tests = [r["test_score"] or 0.0 for r in rs]
            per_task[task][m] = {
                "test": statistics.fmean(tests), "test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                "n": len(rs), "dev": statistics.fmean([r["dev_score"] or 0.0 for r in rs]),
                "evaluations": statistics.fmean([r["evaluations"] or 0 for r in rs]),
                "calls": statistics.fmean([r["calls"] or 0 for r in rs]),
                "distinct": statistics.fmean([r.get("distinct") or 0 for r in rs]),
                "seconds": statistics.fmean([r.get("wall_s") or 0.0 for r in rs]),
            }
            if contains_table.get(m, {}).get(task):
                per_task[task][m]["test_contains"] = statistics.fmean(contains_table[m][task].values())
    means = {m: statistics.fmean(v.values()) for m in methods if (v := _task_means(table.get(m, {}), tasks))}
    contains_means = {m: statistics.fmean(v.values()) for m in methods
                      if (v := _task_means(contains_table.get(m, {}), tasks))}
    diffs = {anchor: {m: bootstrap_ci(paired_diffs(table, m, anchor, tasks)) for m in methods if m != anchor}
             for anchor in (*ANCHORS, ref) if anchor in methods}
    wtl: dict[str, list[int]] = {}
    for b in methods:
        if b == ref or ref not in methods:
            continue
        w = t_ = lo = 0
        for d in paired_diffs(table, ref, b, tasks).values():
            mean = statistics.fmean(d)
            w, t_, lo = (w + 1, t_, lo) if mean > TIE else (w, t_, lo + 1) if mean < -TIE else (w, t_ + 1, lo)
        wtl[b] = [w, t_, lo]
    share = {m: v / means["manual"] for m, v in means.items()} if means.get("manual") else {}
    halves = [(ci[2] - ci[1]) / 2 for anchor in ANCHORS for ci in diffs.get(anchor, {}).values() if ci]
    return {"per_task": per_task, "mean_test": means, "mean_test_contains": contains_means,
            "diff_ci95": diffs, "wins_ties_losses": wtl, "share_of_manual": share, "reference": ref,
            "resolvable": statistics.median(halves) if halves else None,
            "seeds": sorted({int(r["seed"]) for r in ok}), "n_runs": len(ok), "n_failed": len(rows) - len(ok)}


def _ci(ci: list[float] | None) -> str:
    return f"{ci[0]:+.3f} [{ci[1]:+.2f}, {ci[2]:+.2f}]" if ci else "-"


def render(summary: dict[str, Any], methods: list[str], tasks: list[str], title: str) -> str:
    """The plain-text table a run prints: tasks down, methods across, then the summary rows."""
    per_task = summary["per_task"]
    width = 13
    lines = [title, "", f"{'task':<28}" + "".join(f"{m[:12]:>{width}}" for m in methods)]
    for task in tasks:
        cells = [(f"{c['test']:.2f}±{c['test_sd']:.2f}" if (c := per_task[task].get(m)) else "-").rjust(width)
                 for m in methods]
        lines.append(f"{task:<28}" + "".join(cells))
    lines += ["", f"{'(per method, mean over tasks)':<28}" + "".join(f"{m[:12]:>{width}}" for m in methods)]
    for key, fmt in (("evaluations", "{:.1f}"), ("calls", "{:.0f}"), ("distinct", "{:.1f}"), ("seconds", "{:.0f}")):
        vals = [(fmt.format(statistics.fmean(xs)) if (xs := [per_task[t][m][key] for t in tasks
                                                             if m in per_task[t]]) else "-").rjust(width)
                for m in methods]
        lines.append(f"{key:<28}" + "".join(vals))

    def row(label: str, values: dict[str, Any], fmt: str) -> str:
        return f"{label:<28}" + "".join((fmt.format(values[m]) if m in values else "-").rjust(width) for m in methods)

    lines.append(row("MEAN TEST", summary["mean_test"], "{:.3f}"))
    if summary.get("mean_test_contains"):
        lines.append(row("  same answers, contains", summary["mean_test_contains"], "{:.3f}"))
    if summary["share_of_manual"]:
        lines.append(row("share of manual", summary["share_of_manual"], "{:.0%}"))
    for anchor, cis in summary["diff_ci95"].items():
        lines.append(row(f"minus {anchor[:12]}", {m: ci[0] for m, ci in cis.items() if ci}, "{:+.3f}"))
        lines.append(row("  95% interval", {m: f"{ci[1]:+.2f}..{ci[2]:+.2f}" for m, ci in cis.items() if ci}, "{}"))
    if summary["wins_ties_losses"]:
        ref = summary["reference"][:12]
        lines.append(row(f"{ref} W/T/L vs", {m: "/".join(map(str, v)) for m, v in
                                              summary["wins_ties_losses"].items()}, "{}"))
    if summary.get("resolvable") is not None:
        lines.append(f"resolvable difference (median 95% half-width): {summary['resolvable']:.3f}")
    return "\n".join(lines)


def markdown(groups: dict[str, dict[str, Any]], methods: list[str], labels: dict[str, str]) -> str:
    """The top page's table: one block of rows per task group, each method's mean, its differences to random and
    to APE with 95% intervals, its share of manual, and its calls; then the resolvable difference per group."""
    head = ("| group | method | mean test | minus random [95% CI] | minus APE [95% CI] | share of manual "
            "| black-box calls | old metric (contains) |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for group, s in groups.items():
        for m in methods:
            if m not in s["mean_test"]:
                continue
            calls = [c[m]["calls"] for c in s["per_task"].values() if m in c]
            lines.append("| " + " | ".join([
                labels.get(group, group), f"**{m}**" if m == "instructzero" else m, f"{s['mean_test'][m]:.3f}",
                _ci(s["diff_ci95"].get("random", {}).get(m)), _ci(s["diff_ci95"].get("ape", {}).get(m)),
                f"{s['share_of_manual'][m]:.0%}" if m in s["share_of_manual"] else "-",
                f"{statistics.fmean(calls):.0f}" if calls else "-",
                f"{s['mean_test_contains'][m]:.3f}" if m in s.get("mean_test_contains", {}) else "-",
            ]) + " |")
    lines.append("")
    for group, s in groups.items():
        if s.get("resolvable") is not None:
            lines.append(f"- {labels.get(group, group)}: {len(s['per_task'])} tasks x seeds {s['seeds']}, "
                         f"{s['n_runs']} runs; resolvable difference (median half-width of the intervals above) "
                         f"**{s['resolvable']:.3f}**.")
    return "\n".join(lines)
