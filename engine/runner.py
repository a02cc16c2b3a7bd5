"""The one core: run a method on a task, resume it, rerank candidates. Every front end calls this.

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
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from engine.store import History, open_history
from engine.store.history import now
from engine.tasks import Example, Splits, Task, load_task, make_splits
from engine.usage import FIELDS as USAGE_FIELDS
from engine.usage import Usage
from engine.wire.events import (
    CandidateProposed,
    CandidateScored,
    Event,
    IterationDone,
    RerankProgress,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)

if TYPE_CHECKING:
    from engine.blackbox import Race

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]


def _noop(_: Event) -> None:
    return None


@dataclass
class _RunState:
    """Counters of one run. Rebuilt from the store on resume, so they are never the only copy."""

    run_id: int
    task: Task
    splits: Splits
    settings: RunSettings
    endpoint_name: str
    profile: EndpointProfile
    instructions: list[str]
    budget: int
    evaluations: int = 0
    evaluations_saved: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds_before: float = 0.0
    started: float = field(default_factory=time.monotonic)
    best_id: int | None = None
    best_score: float = -math.inf
    best_instruction: str | None = None
    best_position: int = 2**62  # the best's place in proposal order (ties go to the earliest)
    stop_reason: str | None = None

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.started

    def totals(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "evaluations_saved": self.evaluations_saved,
            **self.usage.as_dict(),
            "seconds": round(self.seconds, 3),
            "best_candidate_id": self.best_id,
            "best_instruction": self.best_instruction,
            "best_dev_score": None if self.best_id is None else self.best_score,
        }

    @property
    def max_candidates(self) -> int:
        """A cap on proposals: repeats of scored instructions are free, so without one a proposer that keeps
        writing the same few instructions would never spend its budget."""
        return max(3 * self.budget, self.budget + 20)

    @property
    def cost(self) -> float | None:
        """USD paid so far at the profile's prices (0.0 on a local endpoint); None when the prices are unknown."""
        return self.usage.cost(self.profile.prices)

    def budget_hit(self) -> str | None:
        s = self.settings
        if self.evaluations >= self.budget:
            return "evaluations"
        if s.budget_calls is not None and self.usage.calls >= s.budget_calls:
            return "calls"
        if s.budget_tokens is not None and self.usage.tokens >= s.budget_tokens:
            return "tokens"
        cost = self.cost
        if s.budget_cost is not None and cost is not None and cost >= s.budget_cost:
            return "cost"
        return None

    def test_over_cost(self, n_test: int) -> bool:
        """Whether scoring the best on ``n_test`` examples would likely take the run past its ``budget_cost``:
        priced at the mean cost of the run's paid calls so far (unknown, hence no, before any paid call)."""
        cap, cost = self.settings.budget_cost, self.cost
        if cap is None or cost is None or self.usage.calls == 0:
            return False
        return cost + n_test * cost / self.usage.calls > cap


class _RunContext:
    """What a method sees while it proposes (engine.methods.base.Context), bound to one run and one batch."""

    def __init__(self, engine: Engine, state: _RunState, position: int, emit: Emit) -> None:
        self._engine, self._state, self._emit = engine, state, emit
        self.settings = state.settings
        self.run_id = state.run_id
        self.task = state.task
        self.demos = state.splits.demos
        self.dev = state.splits.dev
        self.instructions = state.instructions
        self.position = position
        self.style = engine._style(state.settings)

    async def generator(self) -> Any:
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


class Engine:
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
    def _alock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def generator(self, emit: Emit = _noop, run_id: int = 0) -> Any:
        """The local model, loaded once per process (it takes seconds; every run after the first reuses it)."""
        async with self._alock():
            if self._generator is None:
                from engine.generator_setup import generator_spec, make_run_generator
                from engine.preparation import Preparation, run_prepared

                g = self.config.generator
                path, name = await asyncio.to_thread(generator_spec, g)
                prep = Preparation(f"preparing generator {name or Path(path).name}")
                self._generator = await run_prepared(lambda p: make_run_generator(g, progress=p), prep,
                                                     lambda text: emit(Status(run_id, text)))
            return self._generator

    async def blackbox(self, name: str, profile: EndpointProfile, emit: Emit = _noop, run_id: int = 0) -> Any:
        """One client per endpoint profile; an embedded model's server is started on first use and shared."""
        from engine.blackbox import BlackBox

        key = f"{name}|{profile.model_dump_json()}"
        async with self._alock():
            if key not in self._blackboxes:
                base_url, identity = None, None
                if profile.embedded:
                    server = self._embedded.for_model(profile.model)
                    if not server.running:
                        from engine.preparation import Preparation, run_prepared

                        prep = Preparation(f"starting the embedded llama.cpp server ({server.alias})")
                        prep("loading the model")
                        await run_prepared(lambda _p: server.start(), prep, lambda text: emit(Status(run_id, text)))
                    base_url = server.base_url
                    identity = server.identity
                self._blackboxes[key] = BlackBox(profile, self.history, base_url=base_url, cache_identity=identity)
            return self._blackboxes[key]

    async def _scorers(
        self, task: Task, name: str, profile: EndpointProfile, emit: Emit = _noop, run_id: int = 0
    ) -> tuple[Any, Any]:
        """The client that scores ``task`` on this endpoint and, for a ``judge`` task, the judge's client.

        A task that sets ``api`` gets the profile with that api (the api is part of the profile, hence of the cache
        key); its other prompt settings travel as per-request overrides (engine.blackbox.scoring). The judge is the
        task's named profile, else this endpoint as configured; its calls are ordinary calls of the run.
        """
        scoring = profile.model_copy(update={"api": task.api}) if task.api and task.api != profile.api else profile
        bb = await self.blackbox(name, scoring, emit, run_id)
        judge = None
        if task.judge is not None:
            jname, jprofile = self.config.endpoint(task.judge.endpoint) if task.judge.endpoint else (name, profile)
            judge = await self.blackbox(jname, jprofile, emit, run_id)
        return bb, judge

    async def aclose(self) -> None:
        for bb in self._blackboxes.values():
            await bb.aclose()
        self._blackboxes.clear()
        await asyncio.to_thread(self._embedded.stop_all)

    def status(self) -> dict[str, Any]:
        return {
            "generator_loaded": self._generator is not None,
            "embedded_url": self._embedded.base_url(),
            "history": str(self.history.path),
        }

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
        stored = settings.model_dump()
        stored["instructions"] = list(instructions)
        made_with = run_provenance(self.config, settings, name, profile)
        return self.history.create_run(task.name, settings.method, stored, {"name": name, **profile.public()},
                                       made_with)

    @staticmethod
    def _estimate(state: _RunState) -> dict[str, Any] | None:
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
        from pathlib import Path

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
        emit: Emit = _noop,
        cancel: asyncio.Event | None = None,
        **create: Any,
    ) -> dict[str, Any]:
        """Record a run (:meth:`create_run`, which takes the ``create`` keywords) and execute it to its end."""
        run_id = self.create_run(task_name, settings, **create)
        return await self.execute(run_id, emit=emit, cancel=cancel)

    async def execute(
        self, run_id: int, *, emit: Emit = _noop, cancel: asyncio.Event | None = None, resumed: bool = False
    ) -> dict[str, Any]:
        """Run (or continue) a recorded run to its budget. Idempotent: calling it again resumes."""
        cancel = cancel or asyncio.Event()
        row = self.history.run(run_id)
        if row["status"] == "finished":
            return self.summary(run_id)
        try:
            state = self._load_state(row)
            self.history.update_run(run_id, status="running", started_at=row["started_at"] or now(), error=None)
            emit(RunStarted(run_id, state.task.name, state.settings.method, state.budget, resumed, state.splits.notes,
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

    async def resume(self, run_id: int, *, emit: Emit = _noop, cancel: asyncio.Event | None = None) -> dict[str, Any]:
        return await self.execute(run_id, emit=emit, cancel=cancel, resumed=True)

    def _fail(self, run_id: int, exc: IZError, emit: Emit) -> None:
        try:
            self.history.update_run(run_id, status="failed", error=str(exc), finished_at=now())
        finally:
            emit(RunFailed(run_id, exc.problem, exc.fix))

    def _load_state(self, row: dict[str, Any]) -> _RunState:
        settings, instructions, name, profile = revive(row)
        task = load_task(row["task"])
        splits = make_splits(
            task, n_demos=settings.n_demos, n_dev=settings.n_dev, n_test=settings.n_test, seed=settings.seed
        )
        budget = self._method(settings.method).budget(settings, len(instructions))
        state = _RunState(row["id"], task, splits, settings, name, profile, instructions, budget,
                          seconds_before=row["seconds"] or 0.0)
        for c in self.history.candidates(row["id"], status="scored"):
            state.evaluations += int(c["duplicate_of"] is None)
            state.evaluations_saved += int(c["duplicate_of"] is not None)
            state.usage += Usage.of_row(c)
            self._track_best(state, c["id"], c["dev_score"], c["instruction"], c["position"])
        return state

    @staticmethod
    def _track_best(state: _RunState, cid: int, score: float, instruction: str, position: int) -> bool:
        """The best is the highest dev score, and among equal ones the earliest proposed, whatever order the
        scores were recorded in (a failed batch keeps its later candidates that were answered, and a resume then
        scores the earlier ones)."""
        if score > state.best_score or (score == state.best_score and position < state.best_position):
            state.best_id, state.best_score, state.best_instruction = cid, score, instruction
            state.best_position = position
            return True
        return False

    async def _execute(self, state: _RunState, emit: Emit, cancel: asyncio.Event) -> None:
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
        self, state: _RunState, iteration: int, position: int, room: int, emit: Emit
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

    def _restore_unattributed_costs(self, state: _RunState) -> None:
        """On resume, add back what the run paid for outside its recorded candidates before the interruption.

        The store rebuilds a run's counters from its scored candidates. Two kinds of calls belong to none: the APE
        proposer's, and the answers of candidates whose scoring was cancelled mid-batch (they sit in the cache,
        so the resumed run gets them free). Every write of the run's totals included them, so the stored totals
        exceed the rebuilt ones by exactly that much.
        """
        extra = Usage.of_row(self.history.run(state.run_id)) - state.usage
        state.usage += Usage(*(max(getattr(extra, f), 0) for f in USAGE_FIELDS))

    def _race(self, state: _RunState) -> Race | None:
        """The bar a batch's candidates are raced against: the run's best dev score *before* the batch, so the
        decision does not depend on the order the batch's answers arrive in and a run stays reproducible. None
        (every example asked) for the first batch, when racing is off, or when the dev set fits in one wave."""
        from engine.blackbox import Race

        s = state.settings
        if not s.race or state.best_id is None or len(state.splits.dev) <= s.race_wave:
            return None
        return Race(bar=state.best_score, wave=s.race_wave)

    async def _score_batch(self, state: _RunState, bb: Any, batch: list[dict[str, Any]], emit: Emit, judge: Any,
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

    async def _fetch_score(self, state: _RunState, bb: Any, cand: dict[str, Any], judge: Any,
                           race: Race | None, received: list[Any] | None = None,
                           dropped: list[int] | None = None) -> Any:
        from engine.blackbox import score_instruction
        from engine.blackbox.client import DROPPED

        if dropped is not None:
            DROPPED.set(dropped)  # this task's context only (and the requests it starts)
        return await score_instruction(bb, state.task, cand["instruction"], state.splits.dev, judge=judge, race=race,
                                       received=received)

    async def _score_candidate(
        self, state: _RunState, bb: Any, cand: dict[str, Any], emit: Emit, judge: Any = None,
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

    async def _score_best_on_test(self, state: _RunState, emit: Emit) -> None:
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
    async def rerank(
        self,
        candidate_ids: Sequence[int],
        *,
        split: str = "test",
        n_examples: int | None = None,
        endpoint: str | None = None,
        model: str | None = None,
        emit: Emit = _noop,
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


__all__ = ["Engine"]
