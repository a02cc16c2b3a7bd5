"""Reranking: scoring chosen candidates again, on more examples, the other split or another endpoint, beside
their earlier scores (kind ``rerank``). A mixin of :class:`engine.runner.Engine` (it uses the engine's clients).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.config import Config, revive
from engine.errors import IZError
from engine.run_state import Emit, noop
from engine.store import History
from engine.tasks import Example, load_task, make_splits
from engine.wire.events import RerankProgress


class Reranking:
    config: Config
    history: History

    async def rerank(
        self,
        candidate_ids: Sequence[int],
        *,
        split: str = "test",
        n_examples: int | None = None,
        endpoint: str | None = None,
        model: str | None = None,
        emit: Emit = noop,
    ) -> list[dict[str, Any]]:
        """Re-score chosen candidates on the test (or dev) split, on more examples or another endpoint.

        The new scores are stored beside the old ones (``scores`` table, kind ``rerank``); the result is sorted
        by the new score, best first.
        """
        from engine.blackbox import score_instruction

        if split not in ("test", "dev"):
            raise IZError(f"unknown split {split!r}", "use --split test or --split dev")
        results = []
        for done, cid in enumerate(candidate_ids, start=1):
            cand = self.history.candidate(cid)
            run = self.history.run(cand["run_id"])
            stored = revive(run)
            settings = stored.settings
            task = load_task(run["task"])
            n_dev, n_test = settings.n_dev, settings.n_test
            if n_examples:
                n_test, n_dev = (n_examples, n_dev) if split == "test" else (n_test, n_examples)
            splits = make_splits(task, n_demos=settings.n_demos, n_dev=n_dev, n_test=n_test, seed=settings.seed)
            examples: list[Example] = splits.test if split == "test" else splits.dev
            if endpoint or model:
                name, profile = self.config.endpoint(endpoint, model)
            else:
                name, profile = stored.endpoint_name, stored.profile
            bb, judge = await self._scorers(task, name, profile, emit, cand["run_id"])
            result = await score_instruction(bb, task, cand["instruction"], examples, judge=judge)
            self.history.add_score(cid, kind="rerank", split=split, endpoint={"name": name, **profile.public()},
                                   metric=task.metric, score=result.mean, outputs=result.outputs)
            emit(RerankProgress(cand["run_id"], cid, done, len(candidate_ids), result.mean))
            results.append({
                "candidate_id": cid, "run_id": cand["run_id"], "instruction": cand["instruction"],
                "dev_score": cand["dev_score"], "test_score": cand["test_score"], "rerank_score": result.mean,
                "split": split, "n_examples": len(examples), "endpoint": name,
            })
        results.sort(key=lambda r: -r["rerank_score"])
        return results
