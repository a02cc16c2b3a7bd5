"""Export a run or a selection of candidates as JSON or Markdown (shared by the CLI and the TUI).

Exports carry instructions, scores and settings only: endpoint descriptions hold the NAME of a key variable at
most, never a key, so an export can be shared as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.cost import money_text, run_cost, run_cost_text
from engine.store import History
from engine.usage import Usage

_CAND_FIELDS = ("id", "run_id", "iteration", "instruction", "dev_score", "test_score", "rerank_score", "cache_hit",
                "duplicate_of", "stopped_early", "star", "note", "manual_rank")


def export_data(history: History, run_id: int | None = None, candidate_ids: Sequence[int] | None = None) -> dict:
    """A run (all its candidates, best first) or chosen candidates, as plain data."""
    if candidate_ids:
        cands = [history.candidate(c) for c in candidate_ids]
        runs = {c["run_id"] for c in cands}
    elif run_id is not None:
        cands = history.candidates(run_id, status="scored")
        runs = {run_id}
    else:
        raise ValueError("give a run id or candidate ids")
    cands.sort(key=lambda c: (-(c["dev_score"] or 0.0), c["id"]))
    run_rows = []
    for rid in sorted(runs):
        r = history.run(rid)
        row = {k: r[k] for k in ("id", "task", "method", "status", "settings", "endpoint", "provenance",
                                 "created_at",
                                 "best_instruction", "best_dev_score", "test_score", "evaluations",
                                 "calls", "calls_saved", "prompt_tokens", "completion_tokens",
                                 "paid_prompt_tokens", "paid_completion_tokens", "seconds")}
        # USD at the prices recorded with the run: 0.0 on a local endpoint, None when unknown
        row["cost"], row["cost_text"] = run_cost(r), run_cost_text(r)
        run_rows.append(row)
    return {
        "runs": run_rows,
        "candidates": [{k: c.get(k) for k in _CAND_FIELDS} for c in cands],
    }


def made_with(provenance: dict[str, Any] | None) -> str:
    """One line naming the models (with short file hashes), the seed and the package version of a run."""
    if not provenance:
        return "not recorded (the run is older than the provenance records)"

    def model(ident: dict[str, Any] | None) -> str:
        if not ident:
            return "none"
        sha = ident.get("sha256")
        return f"{ident.get('name') or ident.get('model')}" + (f" [{sha[:12]}]" if sha else "")

    return (f"generator {model(provenance.get('generator'))} · black box {model(provenance.get('blackbox'))} · "
            f"seed {provenance.get('seed')} · instructzero {provenance.get('version')}")


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def to_markdown(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for r in data["runs"]:
        lines += [
            f"# Run {r['id']}: {r['task']} ({r['method']})",
            "",
            f"- status: {r['status']}; created {r['created_at']}",
            f"- endpoint: {r['endpoint'].get('name')} ({r['endpoint'].get('model')})",
            f"- made with: {made_with(r.get('provenance'))}",
            f"- best instruction: **{r['best_instruction']}**",
            f"- dev score: {_fmt(r['best_dev_score'])}; test score: {_fmt(r['test_score'])}",
            f"- evaluations: {r['evaluations']}; black-box calls: {r['calls']} (saved by cache/dedup: "
            f"{r['calls_saved']}); tokens: {Usage.of_row(r).tokens}; "
            f"time: {_fmt(r['seconds'])} s",
            f"- cost: {r.get('cost_text') or money_text(r.get('cost'))}",
            "",
        ]
    lines += ["| # | instruction | dev | test | rerank | star |", "|---|---|---|---|---|---|"]
    for i, c in enumerate(data["candidates"], 1):
        text = (c["instruction"] or "").replace("|", "\\|")
        lines.append(f"| {i} | {text} | {_fmt(c['dev_score'])} | {_fmt(c['test_score'])} | "
                     f"{_fmt(c['rerank_score'])} | {'★' if c['star'] else ''} |")
    return "\n".join(lines) + "\n"
