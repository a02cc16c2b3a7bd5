"""Scoring a run's candidates: racing, batches asked together, reuse of an instruction the run scored already,
and the best candidate's test score. Every method's candidates are scored here alike.

A mixin of :class:`engine.runner.Engine` (it calls the engine's ``_scorers`` and ``_track_best``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from engine.run_state import Emit, RunState
from engine.store import History
from engine.usage import Usage
from engine.wire.events import CandidateScored, Status

if TYPE_CHECKING:
    from engine.blackbox import Race

log = logging.getLogger("engine.runner")


class RunScoring:
    history: History

    def _race(self, state: RunState) -> Race | None:
        """The bar a batch's candidates are raced against: the run's best dev score *before* the batch, so the
        decision does not depend on the order the batch's answers arrive in and a run stays reproducible. None
        (every example asked) for the first batch, when racing is off, or when the dev set fits in one wave."""
        from engine.blackbox import Race

        s = state.settings
        if not s.race or state.best_id is None or len(state.splits.dev) <= s.race_wave:
            return None
        return Race(bar=state.best_score, wave=s.race_wave)

    async def _score_batch(self, state: RunState, bb: Any, batch: list[dict[str, Any]], emit: Emit, judge: Any,
                           cancel: asyncio.Event) -> bool:
        """Score a batch's unscored candidates; False when the run must stop (cancelled, or a budget reached).

        A raced batch's candidates are asked together (the client bounds how many requests are in flight): each
        waits for a wave's answers before its next wave, and one at a time that would cost a round trip per wave
        per candidate. Results are recorded in the batch's order, as they would be one by one, so the repeats of
        an instruction scored earlier in the batch come out the same. If the batch stops early (cancelled, a
        budget, an endpoint failing for good), the candidates already answered in full are recorded before it
        returns; the answers of the others stay in the cache. A batch that is not raced, or a run with a calls,
        tokens or cost budget (which must stop at its budget, not a batch past it), scores one candidate at a
        time."""
        todo = [c for c in batch if c["status"] != "scored"]
        race = self._race(state)
        s = state.settings
        together = race is not None and s.budget_calls is None and s.budget_tokens is None and s.budget_cost is None
        fetches: dict[int, asyncio.Task[Any]] = {}
        received: dict[int, list[Any]] = {}
        dropped: list[int] = []  # requests on the wire when their fetch was cancelled
        if together:
            texts: set[str] = set()
            for cand in todo:
                text = cand["instruction"]
                if text in texts or self.history.scored_instruction(state.run_id, text) is not None:
                    continue  # answered by an earlier score when its turn comes
                texts.add(text)
                got = received[cand["id"]] = []
                fetches[cand["id"]] = asyncio.ensure_future(
                    self._fetch_score(state, bb, cand, judge, race, got, dropped))
        try:
            for cand in todo:
                if cancel.is_set():
                    return False
                state.stop_reason = state.budget_hit()
                if state.stop_reason:
                    return False
                fetch = fetches.pop(cand["id"], None)
                await self._score_candidate(state, bb, cand, emit, judge, race,
                                            None if fetch is None else await fetch)
        finally:
            for cand in todo:  # stopped early: keep what was answered in full
                fetch = fetches.get(cand["id"])
                if fetch is not None and fetch.done() and not fetch.cancelled() and fetch.exception() is None:
                    del fetches[cand["id"]]
                    await self._score_candidate(state, bb, cand, emit, judge, race, fetch.result())
            for fetch in fetches.values():
                fetch.cancel()
            if fetches:
                await asyncio.gather(*fetches.values(), return_exceptions=True)
                # The answers that came back stay in the cache (free when the run resumes), and requests cut off by
                # the stop may be billed: either way they count as paid now, and the run's totals say so (restored
                # on resume by _restore_unattributed_costs). A cut-off request's tokens are unknown, and one cut
                # off before it left is counted too: on a stop the calls are an upper bound, never short.
                unrecorded = Usage.of_answers([c for cid in fetches for c in received[cid]])
                unrecorded.calls += len(dropped)
                if unrecorded.calls or unrecorded.calls_saved:
                    state.usage += unrecorded
                    self.history.update_run(state.run_id, **state.totals())
        return True

    async def _fetch_score(self, state: RunState, bb: Any, cand: dict[str, Any], judge: Any,
                           race: Race | None, received: list[Any] | None = None,
                           dropped: list[int] | None = None) -> Any:
        from engine.blackbox import score_instruction
        from engine.blackbox.client import DROPPED

        if dropped is not None:
            DROPPED.set(dropped)  # this task's context only (and the requests it starts)
        return await score_instruction(bb, state.task, cand["instruction"], state.splits.dev, judge=judge, race=race,
                                       received=received)

    async def _score_candidate(
        self, state: RunState, bb: Any, cand: dict[str, Any], emit: Emit, judge: Any = None,
        race: Race | None = None, fetched: Any = None,
    ) -> None:
        """Score one candidate on dev, unless the run already scored the same instruction (then reuse it).
        ``fetched``: its score, asked for already by :meth:`_score_batch`."""
        dup = None if fetched is not None else self.history.scored_instruction(state.run_id, cand["instruction"])
        stopped = False
        if dup is not None:
            scores, mean, outputs, dup_id = dup["scores"], dup["dev_score"], [], dup["id"]
            usage = Usage.reused(len(scores))
            stopped = bool(dup.get("stopped_early"))
            state.evaluations_saved += 1
        else:
            result = fetched if fetched is not None else await self._fetch_score(state, bb, cand, judge, race)
            scores, mean, outputs, dup_id = result.per_example, result.mean, result.outputs, None
            usage = result.usage
            stopped = result.stopped_early
            state.evaluations += 1  # only a new instruction costs an evaluation; a repeat is information
        state.usage += usage
        is_best = self._track_best(state, cand["id"], mean, cand["instruction"], cand["position"])
        self.history.record_score(
            cand["id"], dev_score=mean, scores=scores, outputs=outputs, usage=usage, duplicate_of=dup_id,
            run_totals=state.totals(), stopped_early=stopped,
        )
        emit(CandidateScored(
            state.run_id, cand["id"], cand["iteration"], cand["position"], cand["instruction"], mean,
            dup_id is not None or (bool(outputs) and all(o["cache_hit"] for o in outputs)), dup_id,
            state.evaluations, state.budget, state.usage.calls, state.usage.calls_saved, state.best_score,
            state.best_id or cand["id"], is_best, state.cost, len(scores) if stopped else None,
        ))

    async def _score_best_on_test(self, state: RunState, emit: Emit) -> None:
        if state.best_id is None or not state.splits.test:
            return
        if any(sc["kind"] == "test" for sc in self.history.scores(state.best_id)):
            return
        from engine.blackbox import score_instruction

        emit(Status(state.run_id, f"scoring the best instruction on {len(state.splits.test)} test examples"))
        bb, judge = await self._scorers(state.task, state.endpoint_name, state.profile, emit, state.run_id)
        result = await score_instruction(bb, state.task, state.best_instruction or "", state.splits.test, judge=judge)
        state.usage += result.usage
        self.history.add_score(
            state.best_id, kind="test", split="test", endpoint={"name": state.endpoint_name, **state.profile.public()},
            metric=state.task.metric, score=result.mean, outputs=result.outputs,
        )
        self.history.update_run(state.run_id, test_score=result.mean)
