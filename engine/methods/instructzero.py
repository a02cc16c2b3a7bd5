"""``instructzero``: the paper's method. A Sobol start, then Bayesian optimisation over the soft prompts with the
instruction-coupled kernel (engine/bo), learning from each candidate's per-example dev scores."""

from __future__ import annotations

from typing import Any

from engine.methods.base import Context
from engine.methods.soft import SoftPromptMethod


class InstructZero(SoftPromptMethod):
    name = "instructzero"
    help = "soft prompts → local model → instructions, tuned by Bayesian optimisation"
    own_settings = (*SoftPromptMethod.own_settings, "kernel", "optimizer", "surrogate")

    def next_points(self, ctx: Context, iteration: int, n: int) -> Any:
        import torch

        from engine import bo

        s = ctx.settings
        if iteration == 0:
            return bo.sobol_points(n, s.intrinsic_dim, s.seed)
        scored = [c for c in ctx.scored() if c["z"] is not None]
        Z = torch.tensor([c["z"] for c in scored], dtype=torch.float64)
        vectors = [self._graded(ctx, c) for c in scored] if s.surrogate == "graded" else [c["scores"] for c in scored]
        # A raced candidate answered only part of the dev set: its other examples count at its own mean, the
        # one estimate of them there is (it is below the best, which is what racing established).
        n_dev = len(ctx.dev)
        rows = [v + [sum(v) / len(v) if v else 0.0] * (n_dev - len(v)) for v in vectors]
        S = torch.tensor(rows, dtype=torch.float64)
        y = torch.tensor([sum(v) / len(v) if v else 0.0 for v in vectors] if s.surrogate == "graded"
                         else [c["dev_score"] for c in scored], dtype=torch.float64)
        return bo.propose(Z, S, y, n, seed=s.seed * 1000 + iteration, kernel=s.kernel, optimizer=s.optimizer)

    @staticmethod
    def _graded(ctx: Context, cand: dict[str, Any]) -> list[float]:
        """A candidate's per-example dev scores for ``surrogate = "graded"``: each the metric's score or, when
        higher, the answer's word-overlap F1 with its best right answer (a repeat reads its original's answers).
        Only tasks scored by an answer metric on words have such a grade; the others keep their scores."""
        from engine.tasks.metrics import METRICS, f1

        if ctx.task.metric not in METRICS:
            return list(cand["scores"])
        cs = bool(getattr(ctx.task, "case_sensitive", False))
        outs = sorted(ctx.outputs(cand["duplicate_of"] or cand["id"], "dev"), key=lambda o: o["example_index"])
        if len(outs) != len(cand["scores"]):
            return list(cand["scores"])
        return [max(float(o["score"]), f1(o["output"] or "", o["answers"], cs)) for o in outs]
