"""The one core: run a method on a task, resume it, rerank candidates. Every front end calls this.

This module keeps the loop (create, execute, resume, the summary); the engine's other rooms are mixins of its
:class:`Engine`: the warm generator and black-box clients (engine/warm.py), scoring and racing
(engine/run_scoring.py) and reranking (engine/rerank.py); a run's counters are engine/run_state.py, and what each
method proposes is engine/methods/.

Why it is shaped this way:
- Everything a run does reaches the store as it happens (candidates when proposed, scores with their outputs in
  one transaction), so a run killed at any point can be resumed: proposed-but-unscored candidates are re-scored,
  and the black-box cache answers every call that had finished, so nothing is paid twice.
- The BO code is ask/tell (it never calls the black box itself), so this module owns budgets, dedup, events and
  persistence in one place for every method.
- Heavy things (the generator, the embedded server) are created once per Engine and kept warm across runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import paths
from engine.config import Config, EndpointProfile, RunSettings, load_config, revive
from engine.cost import run_cost, run_cost_text
from engine.errors import ConfigError, IZError
from engine.methods import METHODS, Method
from engine.models.catalog import not_gguf
from engine.models.embedded import EmbeddedServers, servers
from engine.provenance import run_provenance
from engine.rerank import Reranking
from engine.run_scoring import RunScoring
from engine.run_state import Emit, RunState, noop
from engine.store import History, open_history
from engine.store.history import now
from engine.tasks import load_task, make_splits
from engine.tasks.user_metrics import code_line, task_code
from engine.usage import FIELDS as USAGE_FIELDS
from engine.usage import Usage
from engine.warm import WarmParts
from engine.wire.events import (
    CandidateProposed,
    IterationDone,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)

if TYPE_CHECKING:  # the backends import torch: only their type is needed here
    from engine.generators.base import InstructionWriter

log = logging.getLogger(__name__)


class _RunContext:
    """What a method sees while it proposes (engine.methods.base.Context), bound to one run and one batch."""

    def __init__(self, engine: Engine, state: RunState, position: int, emit: Emit) -> None:
        self._engine, self._state, self._emit = engine, state, emit
        self.settings = state.settings
        self.run_id = state.run_id
        self.task = state.task
        self.demos = state.splits.demos
        self.dev = state.splits.dev
        self.instructions = state.instructions
        self.position = position
        self.style = engine._style(state.settings)

    async def generator(self) -> InstructionWriter:
        return await self._engine.generator(self._emit, self.run_id)

    async def proposer(self) -> tuple[str, Any]:
        s = self.settings
        name, profile = (self._engine.config.endpoint(s.ape_endpoint) if s.ape_endpoint
                         else (self._state.endpoint_name, self._state.profile))
        return name, await self._engine.blackbox(name, profile, self._emit, self.run_id)

    def scored(self) -> list[dict[str, Any]]:
        return self._engine.history.candidates(self.run_id, status="scored")

    def outputs(self, candidate_id: int, split: str) -> list[dict[str, Any]]:
        return self._engine.history.outputs(candidate_id, split)

    def taken(self) -> list[str]:
        return [c["instruction"] for c in self._engine.history.candidates(self.run_id)]

    def status(self, text: str) -> None:
        self._emit(Status(self.run_id, text))

    def pay(self, answers: Sequence[Any]) -> None:
        self._state.usage += Usage.of_answers(list(answers))


class Engine(WarmParts, RunScoring, Reranking):
    """Holds the warm parts (generator, black-box clients, embedded server) and runs methods on tasks."""

    def __init__(self, config: Config | None = None, history: History | None = None) -> None:
        self.config = config or load_config()
        self.history = history or open_history()
        self._generator: Any = None
        self._blackboxes: dict[str, Any] = {}
        self._embedded: EmbeddedServers = servers  # the process's pool owns the servers' life cycle
        self._lock: asyncio.Lock | None = None
        #: The methods runs may use (engine.methods' registry; a test may put a method with a scripted step here).
        self.methods: Mapping[str, Method] = METHODS

    def _method(self, name: str) -> Method:
        """The method called ``name``, or an error that lists the ones there are."""
        found = self.methods.get(name)
        if found is None:
            raise IZError(f"unknown method {name!r}", f"use one of {', '.join(self.methods)}")
        return found

    # -- warm parts ---------------------------------------------------------------------------------------
    # -- runs ---------------------------------------------------------------------------------------------
    def create_run(
        self,
        task_name: str,
        settings: RunSettings | Mapping[str, Any] | None = None,
        *,
        endpoint: str | None = None,
        model: str | None = None,
        instructions: Sequence[str] = (),
    ) -> int:
        """Validate everything that can be checked cheaply, then record the run. Returns its id.

        ``settings`` is complete :class:`RunSettings`, or only the values that differ from the configured defaults
        (what a front end sends); the merge happens here and nowhere else."""
        if not isinstance(settings, RunSettings):
            settings = self.config.run.with_overrides(settings)
        method = self._method(settings.method)  # an unknown method fails first, naming the ones there are
        # "auto" is recorded as the style used, so a resume or --like asks alike
        settings = settings.model_copy(update={"prompt_style": self._style(settings)})
        task = load_task(task_name)
        make_splits(task, n_demos=settings.n_demos, n_dev=settings.n_dev, n_test=settings.n_test, seed=settings.seed)
        name, profile = self.config.endpoint(endpoint, model)
        method.validate(settings, instructions)
        if method.pays_for_proposals and settings.ape_endpoint:
            self.config.endpoint(settings.ape_endpoint)  # an unknown proposer profile fails here, not mid-run
        if task.judge is not None and task.judge.endpoint:
            self.config.endpoint(task.judge.endpoint)  # so does an unknown judge profile
        if settings.budget_cost is not None and profile.prices is None:
            raise ConfigError(
                f"a cost budget needs the prices of endpoint {name!r}, and its profile has none",
                f"set price_input and price_output (USD per million tokens) under [endpoints.{name}] in "
                f"{paths.config_file()}, or drop --max-cost",
            )
        self._check_model_files(settings, profile)
        code = task_code(task)
        if code is not None and not settings.allow_code:
            raise IZError(f"task {task.name} runs its own code ({code['file']}:{code['function']}) and this run "
                          "refuses task code (--no-code, or allow_code = false)",
                          f"read {code['path']}, then run without --no-code; or pick another task")
        stored = settings.model_dump()
        stored["instructions"] = list(instructions)
        made_with = {**run_provenance(self.config, settings, name, profile), "task_code": code}
        return self.history.create_run(task.name, settings.method, stored, {"name": name, **profile.public()},
                                       made_with)

    @staticmethod
    def _estimate(state: RunState) -> dict[str, Any] | None:
        """The run's estimated calls, tokens and money (engine.cost), for the live screen; None if it fails."""
        from engine.cost import estimate_run

        try:
            return estimate_run(state.task, state.settings, state.profile,
                                n_instructions=len(state.instructions)).as_dict()
        except Exception:  # an estimate is a nicety: never the reason a run fails
            log.exception("run %s: no cost estimate", state.run_id)
            return None

    def _check_model_files(self, settings: RunSettings, profile: EndpointProfile) -> None:
        """Cheap checks (nothing is loaded) of the local model files a run will need, so a wrong path, a model
        not pulled or a file that is not a model fails before the run is recorded rather than seconds into it."""
        if profile.embedded:
            self._embedded.for_model(profile.model)  # EndpointError / ModelError naming the fix
        if not self._method(settings.method).needs_generator or self._generator is not None:
            return

        from engine.errors import GeneratorError
        from engine.generator_setup import generator_spec

        spec, _ = generator_spec(self.config.generator)
        path = Path(spec).expanduser()
        if spec.lower().endswith(".gguf") and not path.exists():
            raise GeneratorError(f"Generator model {path} does not exist.",
                                 "Point [generator] model at a .gguf file, a model folder, or a name from "
                                 "`iz models list`.")
        problem = not_gguf(path) if path.is_file() else None  # a folder is a Hugging Face model
        if problem:
            raise GeneratorError(f"Generator model {path} {problem}.",
                                 "Point [generator] model at a .gguf model file, or re-pull it with `iz models pull`.")

    async def run(
        self,
        task_name: str,
        settings: RunSettings | Mapping[str, Any] | None = None,
        *,
        emit: Emit = noop,
        cancel: asyncio.Event | None = None,
        **create: Any,
    ) -> dict[str, Any]:
        """Record a run (:meth:`create_run`, which takes the ``create`` keywords) and execute it to its end."""
        run_id = self.create_run(task_name, settings, **create)
        return await self.execute(run_id, emit=emit, cancel=cancel)

    async def execute(
        self, run_id: int, *, emit: Emit = noop, cancel: asyncio.Event | None = None, resumed: bool = False
    ) -> dict[str, Any]:
        """Run (or continue) a recorded run to its budget. Idempotent: calling it again resumes."""
        cancel = cancel or asyncio.Event()
        row = self.history.run(run_id)
        if row["status"] == "finished":
            return self.summary(run_id)
        try:
            state = self._load_state(row)
            self.history.update_run(run_id, status="running", started_at=row["started_at"] or now(), error=None)
            code = task_code(state.task)
            notes = [*state.splits.notes, *([code_line(state.task.name, code)] if code else [])]
            emit(RunStarted(run_id, state.task.name, state.settings.method, state.budget, resumed, notes,
                            self._estimate(state)))
            await self._execute(state, emit, cancel)
            money = state.stop_reason in ("calls", "tokens", "cost")
            if (not money and not cancel.is_set() and state.best_id is not None
                    and state.test_over_cost(len(state.splits.test))
                    and not any(sc["kind"] == "test" for sc in self.history.scores(state.best_id))):
                # The held-out test score would cost more than the cap leaves: stop here, keep everything (a rerank
                # can score the best on test later).
                state.stop_reason, money = "cost", True
            status = "cancelled" if cancel.is_set() else ("stopped" if money else "finished")
            if not cancel.is_set() and not money:
                await self._score_best_on_test(state, emit)
            self.history.update_run(
                run_id, status=status, stop_reason=state.stop_reason, finished_at=now(), **state.totals()
            )
            summary = self.summary(run_id)
            emit(RunFinished(run_id, status, state.stop_reason, summary))
            return summary
        except IZError as exc:
            self._fail(run_id, exc, emit)
            raise
        except Exception as exc:  # a bug: keep the run resumable and say what happened
            log.exception("run %s failed", run_id)
            err = IZError(f"run {run_id} failed: {type(exc).__name__}: {exc}",
                          f"see the engine log; resume later with `iz run --resume {run_id}`")
            self._fail(run_id, err, emit)
            raise err from exc

    async def resume(self, run_id: int, *, emit: Emit = noop, cancel: asyncio.Event | None = None) -> dict[str, Any]:
        return await self.execute(run_id, emit=emit, cancel=cancel, resumed=True)

    def _fail(self, run_id: int, exc: IZError, emit: Emit) -> None:
        try:
            self.history.update_run(run_id, status="failed", error=str(exc), finished_at=now())
        finally:
            emit(RunFailed(run_id, exc.problem, exc.fix))

    def _load_state(self, row: dict[str, Any]) -> RunState:
        settings, instructions, name, profile = revive(row)
        task = load_task(row["task"])
        splits = make_splits(
            task, n_demos=settings.n_demos, n_dev=settings.n_dev, n_test=settings.n_test, seed=settings.seed
        )
        budget = self._method(settings.method).budget(settings, len(instructions))
        state = RunState(row["id"], task, splits, settings, name, profile, instructions, budget,
                          seconds_before=row["seconds"] or 0.0)
        for c in self.history.candidates(row["id"], status="scored"):
            state.evaluations += int(c["duplicate_of"] is None)
            state.evaluations_saved += int(c["duplicate_of"] is not None)
            state.usage += Usage.of_row(c)
            self._track_best(state, c["id"], c["dev_score"], c["instruction"], c["position"])
        return state

    @staticmethod
    def _track_best(state: RunState, cid: int, score: float, instruction: str, position: int) -> bool:
        """The best is the highest dev score, and among equal ones the earliest proposed, whatever order the
        scores were recorded in (a failed batch keeps its later candidates that were answered, and a resume then
        scores the earlier ones)."""
        if score > state.best_score or (score == state.best_score and position < state.best_position):
            state.best_id, state.best_score, state.best_instruction = cid, score, instruction
            state.best_position = position
            return True
        return False

    async def _execute(self, state: RunState, emit: Emit, cancel: asyncio.Event) -> None:
        self._restore_unattributed_costs(state)
        bb, judge = await self._scorers(state.task, state.endpoint_name, state.profile, emit, state.run_id)
        iteration = 0
        while not cancel.is_set():
            existing = [c for c in self.history.candidates(state.run_id) if c["iteration"] == iteration]
            if not existing:
                state.stop_reason = state.budget_hit()
                if state.stop_reason:
                    break
                total = len(self.history.candidates(state.run_id))
                room = state.budget - state.evaluations
                if room <= 0:
                    break
                if total >= state.max_candidates:
                    # The proposer keeps writing instructions the run has scored already: stop, keep the best.
                    log.info("run %s: %d proposals gave only %d distinct instructions; stopping",
                             state.run_id, total, state.evaluations)
                    state.stop_reason = "no_new_instructions"
                    break
                existing = await self._propose(state, iteration, total, room, emit)
                if not existing:
                    break
            if not await self._score_batch(state, bb, existing, emit, judge, cancel):
                return
            emit(IterationDone(state.run_id, iteration, state.best_score, state.evaluations))
            iteration += 1

    async def _propose(
        self, state: RunState, iteration: int, position: int, room: int, emit: Emit
    ) -> list[dict[str, Any]]:
        """Make the next batch of candidates (the run's method, engine.methods) and record them before any of them
        is scored."""
        method = self._method(state.settings.method)
        n = method.batch(state.settings, iteration, room)
        proposal = await method.propose(_RunContext(self, state, position, emit), iteration, n)
        with self.history.transaction():
            ids = [
                self.history.add_candidate(state.run_id, iteration, position + i, z, text, decoding=how)
                for i, (z, text, how) in enumerate(zip(proposal.zs, proposal.texts, proposal.decodings, strict=True))
            ]
            if method.pays_for_proposals:  # the proposer's calls, stored with the candidates they paid for
                self.history.update_run(state.run_id, **state.totals())
        for i, (cid, text) in enumerate(zip(ids, proposal.texts, strict=True)):
            emit(CandidateProposed(state.run_id, cid, iteration, position + i, text))
        return [self.history.candidate(cid) for cid in ids]

    def _style(self, settings: RunSettings) -> str:
        """The run's prompt style: its own, or for "auto" the generator model's measured one (without loading it)."""
        if settings.prompt_style != "auto":
            return settings.prompt_style
        from engine.generator_setup import default_prompt_style

        return default_prompt_style(self.config.generator)

    def _restore_unattributed_costs(self, state: RunState) -> None:
        """On resume, add back what the run paid for outside its recorded candidates before the interruption.

        The store rebuilds a run's counters from its scored candidates. Two kinds of calls belong to none: the APE
        proposer's, and the answers of candidates whose scoring was cancelled mid-batch (they sit in the cache,
        so the resumed run gets them free). Every write of the run's totals included them, so the stored totals
        exceed the rebuilt ones by exactly that much.
        """
        extra = Usage.of_row(self.history.run(state.run_id)) - state.usage
        state.usage += Usage(*(max(getattr(extra, f), 0) for f in USAGE_FIELDS))

    def summary(self, run_id: int) -> dict[str, Any]:
        r = self.history.run(run_id)
        n_dev = int((r.get("settings") or {}).get("n_dev") or 0)
        raced = [c for c in self.history.candidates(run_id, status="scored")
                 if c.get("stopped_early") and c["duplicate_of"] is None]
        return {
            "run_id": run_id,
            "task": r["task"],
            "method": r["method"],
            "status": r["status"],
            "stop_reason": r["stop_reason"],
            "best_candidate_id": r["best_candidate_id"],
            "best_instruction": r["best_instruction"],
            "dev_score": r["best_dev_score"],
            "test_score": r["test_score"],
            "evaluations": r["evaluations"],
            "evaluations_saved": r["evaluations_saved"],
            "calls": r["calls"],
            "calls_saved": r["calls_saved"],
            # racing: candidates stopped early, and the dev answers that were therefore never asked (or paid)
            "raced_out": len(raced),
            "answers_skipped": sum(max(n_dev - len(c["scores"] or []), 0) for c in raced),
            "tokens": Usage.of_row(r).tokens,
            "cost": run_cost(r),  # USD at the run's prices: 0.0 on a local endpoint, None when unknown
            "cost_text": run_cost_text(r),
            "seconds": r["seconds"],
        }

    # -- rerank -------------------------------------------------------------------------------------------
