"""SIGKILL of the real engine process at many points of a run, then resume: nothing finished is lost or paid twice.

Every kill is aimed, without hooks in the product: at the Nth request the counting endpoint receives (it sends the
SIGKILL with that request in flight), at an event of a given kind reaching the client, or at the moment the engine
holds the store's write lock (read from /proc/locks). Before an aimed kill the endpoint stops answering and waits
until every answer it delivered is in the store's cache, so "delivered" and "finished" are the same set and the
check "no finished call is asked again" is exact.

After each kill: the store passes ``PRAGMA integrity_check``, the run reads ``running``, every evaluation the
client saw finish is in the store with its score and outputs; then the run is resumed (by a shared engine, by a
fresh one, or by ``iz run --resume`` through the real CLI) to its end, and the endpoint's log shows no finished
call asked again.

The black box is the deterministic fake (what is tested is the engine, not the model). The manual and APE points
need no local model and take a second or two each; the points around generation use the bundled SmolLM2 generator
and are marked ``integration``, as is the kill next to the real embedded llama.cpp server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from reliability_fakes import (
    FakeOpenAI,
    Request,
    alive,
    check_integrity,
    children,
    cmdline,
    engine_env,
    finished_keys,
    is_proposal,
    sigkill,
    wait_gone,
    write_config,
    write_lock_holder,
)

from engine.errors import EngineError
from engine.store import open_history
from engine.tasks import load_task, make_splits
from engine.wire.client import EngineClient
from engine.wire.events import (
    CandidateProposed,
    CandidateScored,
    Event,
    IterationDone,
    RunFailed,
    RunFinished,
    RunStarted,
    Status,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

TASK = "larger_animal"
MANUAL = {"method": "manual", "n_dev": 3, "n_test": 2, "n_demos": 2}
APE = {"method": "ape", "n_init": 2, "batch_size": 1, "budget_evaluations": 3, "n_dev": 3, "n_test": 2, "n_demos": 2}
GENERATED = {"method": "instructzero", "n_init": 2, "batch_size": 1, "budget_evaluations": 3, "n_dev": 2,
             "n_test": 2, "n_demos": 2}
EVENT_WAIT_S = 180.0
IZ = [sys.executable, "-m", "iz_tui"]


def instructions(point: str) -> list[str]:
    """Four instructions (the third repeats the first: a free duplicate), unique to the point, because the runs
    of this module share one history and so one response cache."""
    return [f"Name the larger animal ({point}).", f"Write the bigger of the two ({point}).",
            f"Name the larger animal ({point}).", f"Answer with one animal only ({point})."]


def _test_inputs(settings: dict[str, Any]) -> set[str]:
    splits = make_splits(load_task(TASK), n_demos=settings["n_demos"], n_dev=settings["n_dev"],
                         n_test=settings["n_test"], seed=settings.get("seed", 0))
    return {ex.input for ex in splits.test}


def _asks_test(settings: dict[str, Any]) -> Callable[[Request], bool]:
    inputs = _test_inputs(settings)
    return lambda r: any(f"Input: {i}\n\nOutput:" in r.text for i in inputs)


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Path:
    h = tmp_path_factory.mktemp("iz_kill_home")
    write_config(h, fake.url)
    return h


@pytest.fixture(autouse=True)
def _in_home(_sandbox_home: Path, home: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def db(home: Path) -> Path:
    return home / "history.db"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def resumer(home: Path) -> AsyncIterator[EngineClient]:
    """One engine, started once, that resumes the killed runs (a resume needs no fresh process to be tested)."""
    client = EngineClient(env=engine_env(home))
    await client.start()
    await client.status()
    yield client
    await client.close()


# -- one kill ---------------------------------------------------------------------------------------------------
@dataclass
class Point:
    """Where to kill: at the ``request``-th request matching ``where``, at the first event ``on_event`` accepts
    (after ``delay`` seconds), or at the first store write seen after such an event (``during_write``)."""

    name: str
    request: int | None = None
    where: Callable[[Request], bool] = lambda r: True
    on_event: Callable[[Event], bool] | None = None
    delay: float = 0.0
    during_write: bool = False
    pad: int = 0  # filler after each answer (see FakeOpenAI.pad)

    @property
    def frozen(self) -> bool:
        """Whether the endpoint waits for delivered answers to be stored before the kill (not for a kill aimed
        inside a store write: waiting would miss the write)."""
        return not self.during_write


@dataclass
class Killed:
    """A run right after its engine was killed: the events the client saw, where the endpoint's log stood when
    the run started (``mark``) and right after the kill (``after``), and the calls finished and delivered."""

    run_id: int
    events: list[Event]
    mark: int
    after: int
    finished: set[str]
    delivered: set[str]


async def kill_during(client: EngineClient, fake: FakeOpenAI, db: Path, point: Point,
                      begin: Callable[[], Any], mark: int | None = None) -> tuple[list[Event], Any]:
    """Arm the point, call ``begin()`` (a coroutine: start, resume or rerank), and read events until the client
    reports the engine's death. Returns the events seen and what ``begin`` returned (None if it died first)."""
    pid = client.pid
    assert pid is not None
    mark = fake.mark() if mark is None else mark
    if point.request is not None:
        fake.kill_at_request(point.request, pid, db, where=point.where, mark=mark)
    watcher: threading.Thread | None = None
    stop = threading.Event()

    def watch_writes() -> None:
        holds = write_lock_holder(db)
        while not stop.is_set() and alive(pid):
            if holds(pid):
                fake.kills.append(pid)
                sigkill(pid)
                return

    kills_before = len(fake.kills)
    task = asyncio.ensure_future(begin())
    events: list[Event] = []
    deadline = time.monotonic() + EVENT_WAIT_S
    try:
        while True:
            try:
                ev = await asyncio.wait_for(client.events.get(), 0.2)
            except TimeoutError:
                if client.dead is not None and client.events.empty():
                    break  # no run to report (a rerank): the death itself is the end
                assert time.monotonic() < deadline, f"{point.name}: no kill within {EVENT_WAIT_S:g}s"
                continue
            events.append(ev)
            if isinstance(ev, RunFinished):
                pytest.fail(f"{point.name}: the run ended before the kill: {ev}")
            if isinstance(ev, RunFailed):
                assert "killed by signal 9" in ev.problem, ev.problem
                assert ev.fix and "--resume" in ev.fix
                break
            if point.on_event is not None and point.on_event(ev) and len(fake.kills) == kills_before:
                if point.during_write:
                    if watcher is None:
                        watcher = threading.Thread(target=watch_writes, daemon=True)
                        watcher.start()
                    continue
                if point.delay:
                    await asyncio.sleep(point.delay)
                await asyncio.to_thread(fake.kill, pid, db, mark=mark)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(10)
    try:
        result = await asyncio.wait_for(task, 30)
    except EngineError as exc:  # the request itself was in flight when the engine died
        assert "killed by signal 9" in exc.problem
        result = None
    assert len(fake.kills) == kills_before + 1, f"{point.name}: the engine was not killed by the test"
    assert not alive(pid)
    return events, result


async def start_and_kill(home: Path, fake: FakeOpenAI, db: Path, point: Point, settings: dict[str, Any],
                         instr: list[str] | None = None) -> Killed:
    client = EngineClient(env=engine_env(home))
    await client.start()
    fake.pad = point.pad
    try:
        mark = fake.mark()
        run_ids: list[int] = []

        async def begin() -> int:
            run_ids.append(await client.start_run(TASK, settings=settings, instructions=instr))
            return run_ids[-1]

        events, _ = await kill_during(client, fake, db, point, begin, mark)
    finally:
        await client.close()
    run_id = run_ids[0] if run_ids else next(e.run_id for e in events)
    return after_kill(db, fake, point, run_id, events, mark, settings["n_dev"])


def after_kill(db: Path, fake: FakeOpenAI, point: Point, run_id: int, events: list[Event], mark: int,
               n_dev: int) -> Killed:
    """What must hold right after a SIGKILL, before anything touches the store again."""
    check_integrity(db)
    h = open_history(db)
    try:
        assert h.run(run_id)["status"] == "running"  # what a SIGKILL leaves behind: resumable
        for ev in events:  # every evaluation the client saw finish is in the store, whole
            if isinstance(ev, CandidateScored) and ev.run_id == run_id:
                c = h.candidate(ev.candidate_id)
                assert c["status"] == "scored" and c["dev_score"] == ev.dev_score
                assert len(c["scores"]) == n_dev
                assert len(h.outputs(c["id"], "dev")) == (0 if c["duplicate_of"] else n_dev)
    finally:
        h.close()
    after = fake.mark()
    reqs = fake.since(mark)
    delivered = {r.key for r in reqs if r.delivered}
    finished = finished_keys(db, reqs)
    if point.frozen:
        assert finished == delivered, "an answer the endpoint delivered before the kill was not stored"
    fake.reset()  # answer again, for whoever resumes
    return Killed(run_id, events, mark, after, finished, delivered)


async def wait_run(client: EngineClient, run_id: int) -> Event:
    return await asyncio.wait_for(client.wait_run(run_id), EVENT_WAIT_S)


def check_resumed(db: Path, fake: FakeOpenAI, killed: Killed, settings: dict[str, Any],
                  instr: list[str] | None = None) -> dict[str, Any]:
    """The resumed run is complete and consistent, and paid for no finished call again."""
    again = [r for r in fake.since(killed.after) if r.key in killed.finished]
    assert again == [], f"{len(again)} finished black-box calls were asked again after the kill"
    check_integrity(db)
    h = open_history(db)
    try:
        run = h.run(killed.run_id)
        assert run["status"] == "finished", run
        cands = h.candidates(killed.run_id)
        assert cands and all(c["status"] == "scored" for c in cands)
        n_dev = settings["n_dev"]
        for c in cands:
            assert len(c["scores"]) == n_dev
            assert abs(sum(c["scores"]) / n_dev - c["dev_score"]) < 1e-9
            if c["duplicate_of"] is None:
                assert [o["score"] for o in h.outputs(c["id"], "dev")] == c["scores"]
        assert sum(c["duplicate_of"] is None for c in cands) == run["evaluations"]
        if instr is not None:
            assert [c["instruction"] for c in cands] == instr
            assert run["evaluations"] == len(set(instr)) and run["evaluations_saved"] == len(instr) - len(set(instr))
        else:
            assert run["evaluations"] == settings["budget_evaluations"]
        best = max(cands, key=lambda c: (c["dev_score"], -c["position"]))
        assert run["best_candidate_id"] == best["id"]
        tests = [s for s in h.scores(best["id"]) if s["kind"] == "test"]
        assert len(tests) == 1 and tests[0]["n_examples"] == settings["n_test"]
        assert run["test_score"] == tests[0]["score"]
        # Every answer the run used is accounted for once: paid, or saved (by the cache or a duplicate).
        used = len(cands) * n_dev + settings["n_test"]
        if settings["method"] == "ape":  # plus the proposer's calls
            assert run["calls"] + run["calls_saved"] > used
        else:
            assert run["calls"] + run["calls_saved"] == used
        # ...and the evaluations finished before the kill are untouched (same candidates, same scores).
        for ev in killed.events:
            if isinstance(ev, CandidateScored) and ev.run_id == killed.run_id:
                assert h.candidate(ev.candidate_id)["dev_score"] == ev.dev_score
        return run
    finally:
        h.close()


def _scored(n: int) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, CandidateScored) and e.evaluations >= n


# -- the points ---------------------------------------------------------------------------------------------------
MANUAL_POINTS = [
    # The run has just started: recorded, its candidates about to be scored.
    Point("run_started", on_event=lambda e: isinstance(e, RunStarted)),
    # The very first black-box call is in flight.
    Point("first_call_in_flight", request=1),
    # Two of the first candidate's three dev answers are finished, the third in flight: the candidate is unscored.
    Point("mid_candidate", request=3),
    # Right after the first evaluation was stored (the second one's calls may be on their way).
    Point("after_first_evaluation", on_event=_scored(1)),
    # Inside a store write (a cache row or a score transaction) after the first evaluation; the answers carry
    # 200 kB of filler after their first line, so each write takes long enough to be caught in the act.
    Point("during_store_write", on_event=_scored(1), during_write=True, pad=200_000),
    # Right after the repeated instruction was recorded as a duplicate (free, no call).
    Point("after_duplicate", on_event=lambda e: isinstance(e, CandidateScored) and e.duplicate_of is not None),
    # Dev scoring is over; the best instruction is about to be scored on test: the kill comes with the first test
    # request in flight, so no test answer has finished. (Killing on the IterationDone event raced the engine: on a
    # loaded machine the whole test split could be scored before the test reacted to the event.)
    Point("before_test_scoring", request=1, where=_asks_test(MANUAL)),
    # Test scoring: one test answer finished, the second in flight.
    Point("during_test_scoring", request=2, where=_asks_test(MANUAL)),
]


@pytest.mark.parametrize("point", MANUAL_POINTS, ids=lambda p: p.name)
async def test_kill_then_resume_manual(point: Point, home: Path, fake: FakeOpenAI, db: Path,
                                       resumer: EngineClient) -> None:
    instr = instructions(point.name)
    killed = await start_and_kill(home, fake, db, point, MANUAL, instr)
    await resumer.resume_run(killed.run_id)
    last = await wait_run(resumer, killed.run_id)
    assert isinstance(last, RunFinished) and last.status == "finished", last
    check_resumed(db, fake, killed, MANUAL, instr)
    # 3 distinct instructions x 3 dev examples + 2 test examples: each asked until delivered, never after.
    keys = [r.key for r in fake.since(killed.mark) if r.delivered]
    assert len(set(keys)) == 3 * MANUAL["n_dev"] + MANUAL["n_test"]
    if point.frozen:
        assert len(keys) == len(set(keys)), "a call was delivered twice"


async def test_kill_during_ape_proposals(home: Path, fake: FakeOpenAI, db: Path, resumer: EngineClient) -> None:
    """APE: the endpoint itself proposes the instructions; killed with one proposal answered, one in flight."""
    point = Point("ape_proposal", request=2, where=lambda r: is_proposal(r.text))
    killed = await start_and_kill(home, fake, db, point, APE)
    h = open_history(db)
    assert h.candidates(killed.run_id) == []  # proposals are recorded together, after the last one is in
    h.close()
    await resumer.resume_run(killed.run_id)
    last = await wait_run(resumer, killed.run_id)
    assert isinstance(last, RunFinished) and last.status == "finished", last
    run = check_resumed(db, fake, killed, APE)
    proposals = [r for r in fake.since(killed.mark) if is_proposal(r.text) and r.delivered]
    # 2 to start, then 1 an iteration (more if a proposal repeats an instruction): each paid once.
    assert len(proposals) == len({r.key for r in proposals}) >= 3
    assert run["calls"] >= len(proposals)


async def test_killed_twice_second_time_while_resuming(home: Path, fake: FakeOpenAI, db: Path,
                                                         resumer: EngineClient) -> None:
    """Killed mid-candidate, then killed again mid-candidate while a fresh engine resumes it, then resumed."""
    instr = instructions("twice")
    first = await start_and_kill(home, fake, db, Point("twice_first", request=2), MANUAL, instr)
    point = Point("twice_while_resuming", request=2)
    client = EngineClient(env=engine_env(home))
    await client.start()
    mark = fake.mark()
    try:
        async def begin() -> int:
            return await client.resume_run(first.run_id)

        events, _ = await kill_during(client, fake, db, point, begin, mark)
    finally:
        await client.close()
    again = [r for r in fake.since(first.after) if r.key in first.finished]
    assert again == [], "the first resume asked a call finished before the first kill"
    second = after_kill(db, fake, point, first.run_id, events, mark, MANUAL["n_dev"])
    assert len(second.finished) == 1  # the resume's first new call; its second was in flight
    fake.reset()
    await resumer.resume_run(first.run_id)
    last = await wait_run(resumer, first.run_id)
    assert isinstance(last, RunFinished) and last.status == "finished", last
    both = Killed(first.run_id, first.events + second.events, first.mark, second.after,
                  first.finished | second.finished, first.delivered | second.delivered)
    check_resumed(db, fake, both, MANUAL, instr)
    keys = [r.key for r in fake.since(first.mark) if r.delivered]
    assert len(keys) == len(set(keys)) == 3 * MANUAL["n_dev"] + MANUAL["n_test"]


async def test_kill_during_rerank_then_rerank_again(home: Path, fake: FakeOpenAI, db: Path,
                                                    resumer: EngineClient) -> None:
    """A rerank killed on its fifth request (the first candidate is done): what it finished is kept, and
    asking again pays only for the rest."""
    instr = instructions("rerank")
    run_id = await resumer.start_run(TASK, settings=MANUAL, instructions=instr)
    last = await wait_run(resumer, run_id)
    assert isinstance(last, RunFinished), last
    h = open_history(db)
    ids = [c["id"] for c in h.candidates(run_id) if c["duplicate_of"] is None]
    h.close()
    assert len(ids) == 3
    client = EngineClient(env=engine_env(home))
    await client.start()
    mark = fake.mark()
    try:
        events, result = await kill_during(
            client, fake, db, Point("rerank", request=5), lambda: client.rerank(ids, split="test", n_examples=4),
            mark)
    finally:
        await client.close()
    assert result is None  # the rerank itself died with the engine
    fake.reset()
    check_integrity(db)
    finished = finished_keys(db, fake.since(mark))
    assert finished == {r.key for r in fake.since(mark) if r.delivered} and len(finished) >= 1
    h = open_history(db)
    before = {cid: [s["score"] for s in h.scores(cid) if s["kind"] == "rerank"] for cid in ids}
    h.close()
    assert sum(len(v) for v in before.values()) >= 1  # the first candidate's new score was stored before the kill
    again_mark = fake.mark()
    results = await resumer.rerank(ids, split="test", n_examples=4)
    assert sorted(r["candidate_id"] for r in results) == sorted(ids)
    assert all(r["n_examples"] == 4 for r in results)
    repeated = [r for r in fake.since(again_mark) if r.key in finished]
    assert repeated == [], "the second rerank paid again for calls finished before the kill"
    h = open_history(db)
    for r in results:
        scores = [s["score"] for s in h.scores(r["candidate_id"]) if s["kind"] == "rerank"]
        assert scores[-1] == r["rerank_score"]
        assert all(s == r["rerank_score"] for s in before[r["candidate_id"]])  # same answers, same score
    h.close()
    check_integrity(db)


async def test_cli_run_killed_then_cli_resume(home: Path, fake: FakeOpenAI, db: Path) -> None:
    """`iz run` loses its engine mid-run: one clear message, no traceback; `iz run --resume` finishes the run."""
    instr = instructions("cli")
    env = engine_env(home)
    args = [*IZ, "run", TASK, "--dev", str(MANUAL["n_dev"]), "--test", str(MANUAL["n_test"]), "--demos",
            str(MANUAL["n_demos"]), "--json"]
    for text in instr:
        args += ["--instruction", text]
    mark = fake.mark()
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    engine_pid: list[int] = []

    def find_engine() -> int:
        kids = [p for p in children(proc.pid) if "engine serve" in cmdline(p)]
        assert len(kids) == 1, kids
        engine_pid.append(kids[0])
        return kids[0]

    fake.kill_at_request(5, find_engine, db, mark=mark)  # the second candidate's second call
    out, err = await asyncio.wait_for(proc.communicate(), EVENT_WAIT_S)
    stderr = err.decode()
    assert proc.returncode != 0 and engine_pid, stderr[-2000:]
    assert "killed by signal 9" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr and out == b""
    h = open_history(db)
    run_id = h.runs(limit=1)[0]["id"]
    h.close()
    killed = after_kill(db, fake, Point("cli", request=5), run_id, [], mark, MANUAL["n_dev"])
    assert len(killed.finished) == 4
    fake.reset()
    proc = await asyncio.create_subprocess_exec(*IZ, "run", "--resume", str(run_id), "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), EVENT_WAIT_S)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["run_id"] == run_id and summary["status"] == "finished"
    check_resumed(db, fake, killed, MANUAL, instr)


# -- with the real generator, and next to the real embedded server ----------------------------------------------
@pytest.mark.integration
async def test_kill_while_loading_and_while_generating_then_cli_resume(home: Path, fake: FakeOpenAI,
                                                                     db: Path) -> None:
    """One InstructZero run (the bundled SmolLM2 generator) killed twice: while the generator loads, then while
    it writes the second batch (iteration 0 proposed and scored, the BO step has chosen the next soft prompt);
    `iz run --resume` then finishes it. What iteration 0 produced and scored survives unchanged, and nothing of
    the batch being written is in the store."""
    loading = Point("generator_load", on_event=lambda e: isinstance(e, Status) and "preparing generator" in e.message)
    killed = await start_and_kill(home, fake, db, loading, GENERATED)
    run_id = killed.run_id
    h = open_history(db)
    assert h.candidates(run_id) == []
    h.close()

    writes: list[Event] = []

    def second_batch(e: Event) -> bool:
        if isinstance(e, Status) and e.message.startswith("writing"):
            writes.append(e)
        return len(writes) == 2

    client = EngineClient(env=engine_env(home))
    await client.start()
    mark = fake.mark()
    point = Point("generation_after_bo_step", on_event=second_batch, delay=0.1)
    try:
        events, _ = await kill_during(client, fake, db, point, lambda: client.resume_run(run_id), mark)
    finally:
        await client.close()
    assert any(isinstance(e, IterationDone) and e.iteration == 0 for e in events)
    assert not [e for e in events if isinstance(e, CandidateProposed) and e.iteration == 1], "killed too late"
    second = after_kill(db, fake, point, run_id, events, mark, GENERATED["n_dev"])
    assert len(second.finished) == GENERATED["n_init"] * GENERATED["n_dev"]
    h = open_history(db)
    first = [(c["id"], c["z"], c["instruction"], c["dev_score"]) for c in h.candidates(run_id)]
    h.close()
    # Iteration 0 whole; of iteration 1, being written at the kill, nothing.
    assert len(first) == GENERATED["n_init"] and all(len(z) == 10 for _, z, _, _ in first)

    again = fake.mark()
    proc = await asyncio.create_subprocess_exec(*IZ, "run", "--resume", str(run_id), "--json", env=engine_env(home),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), EVENT_WAIT_S)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert json.loads(out)["status"] == "finished"
    check_resumed(db, fake, Killed(run_id, events, killed.mark, again, second.finished, second.delivered),
                  GENERATED)
    h = open_history(db)
    cands = h.candidates(run_id)
    h.close()
    assert [(c["id"], c["z"], c["instruction"], c["dev_score"]) for c in cands[: len(first)]] == first
    assert {c["iteration"] for c in cands} >= {0, 1}


@pytest.mark.integration
async def test_sigkilled_engine_takes_the_embedded_server_with_it(home: Path, db: Path) -> None:
    """The engine scoring on the real embedded llama.cpp server is SIGKILLed: the server goes too (it was
    started with PR_SET_PDEATHSIG), and the store is intact."""
    client = EngineClient(env=engine_env(home))
    await client.start()
    try:
        run_id = await client.start_run(TASK, settings={**MANUAL, "n_dev": 2}, endpoint="embedded",
                                        instructions=instructions("embedded"))
        while True:
            ev = await asyncio.wait_for(client.events.get(), EVENT_WAIT_S)
            assert not isinstance(ev, RunFinished | RunFailed), ev
            if isinstance(ev, CandidateScored):
                break
        servers = [p for p in children(client.pid or 0) if "llama_cpp.server" in cmdline(p)]
        assert len(servers) == 1
        sigkill(client.pid or 0)
        left = wait_gone(servers, timeout=20)
        for p in left:  # never leave one behind, even when the test fails
            sigkill(p)
        assert left == [], "the llama.cpp server outlived the SIGKILLed engine"
    finally:
        await client.close()
    check_integrity(db)
    h = open_history(db)
    assert h.run(run_id)["status"] == "running"
    assert len(h.candidates(run_id, status="scored")) >= 1
    h.close()
