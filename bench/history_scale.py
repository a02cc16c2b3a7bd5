"""The history at scale: 100,000 candidates in 1,000 runs, and how fast the store and the TUI answer on it.

    python bench/history_scale.py [--runs 1000] [--per-run 100] [--outputs 10] [--repeats 7]
                                  [--cache-dir DIR] [--refill] [--skip-store] [--skip-tui] [--skip-start]
                                  [--grouped-before REF]

The store is filled through its own API (``History.create_run / add_candidate / record_score / add_score /
set_mark``, one transaction a run) with realistic rows: 100 candidates a run in batches of 25, about one in five a
repeat of an earlier instruction of the run (``duplicate_of``, no outputs, as the engine stores them), ``--outputs``
per-example outputs for every other one, a test score on each run's best, rerank scores on the top three of every
tenth run, a star on one candidate in a hundred. The filled file is cached (``--cache-dir``, default
``$TMPDIR/iz-bench-cache``) under a name that says what is in it, so a rerun skips the fill; every measurement runs
on a fresh copy, which the current release opens (so its migrations, indexes included, are applied to the copy).

Then, each the median of ``--repeats`` runs (after one warm-up):

- store: full-text search (a common phrase and a rare word, bm25), the first page the history screen asks for
  (no filter, best dev score first), a filtered and sorted page (task + method + minimum score), the page sorted
  by rerank/test score, the page grouped by instruction (the history's ``g`` view; also sorted by rerank score,
  starred only and with a search), a run's detail (``iz show``: the run and its candidates), a candidate's detail (its scores
  and outputs) and the rerank bookkeeping (the run's top 3 by dev score, one per instruction; the three
  candidate/run reads and score writes a rerank makes; the history re-sorted by rerank score);
- TUI (Textual Pilot on the real store, headless 120x40; "painted" is the moment the frame that shows it reaches
  the terminal driver, ``App._display``, not Pilot's idle wait, which adds 100 ms or more to any key here): a
  screen with no data (help, key ``?``) as the baseline, the history screen's first page (key ``h`` to the first
  frame with the rows; the line says how much of it was the query and the table fill) and a search typed into
  it (the debounce firing to the first frame with its rows; the 150 ms debounce itself is not counted, the line
  says so), and the largest gap between two input events handled while a paper-size run (150 evaluations)
  streams its events into the run screen;
- start-up: ``iz`` cold start to the first screen drawn and ``iz --help``, each against ``python -c pass`` timed
  alternately in the same run; and the history's first opening in a fresh process (``h`` a second after the
  first screen; the TUI rows above open it after a warm-up and count the later openings).

``--grouped-before REF`` adds a table of the grouped pages (every order, filters, a search) against the grouped SQL
of ``engine/store/history.py`` at a git ref, alternately on the same store, the same rows asserted.

Targets: every store and TUI figure under 100 ms median; the table prints the ratio to that target, and the file
size per candidate. Machines here are noisy: compare figures inside one table.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Bump when the fill changes, so a cached file from an older fill is not reused.
FILL_VERSION = 1
TARGET_MS = 100.0

TASKS = ["antonyms", "capital_city", "country_to_continent", "difference", "first_letter", "larger_animal",
         "last_letter", "letter_count", "number_to_words", "past_tense", "second_letter", "sentiment",
         "singular_to_plural", "sum", "uppercase", "word_sorting"]
METHODS = ["instructzero", "instructzero", "random", "ape", "ape_local", "manual"]
VERBS = ["Write", "Give", "Name", "Return", "Pick", "Choose", "Say", "Turn", "Convert", "Translate", "Reverse",
         "Find", "List", "Spell", "Count", "Sort", "Answer with", "Output", "Take", "Change", "Determine",
         "Identify", "Provide", "State", "Produce", "Compute", "Select", "Tell me", "Print", "Rewrite"]
OBJECTS = ["the larger animal", "the opposite", "the plural form", "the past tense", "the first letter",
           "the last letter", "the capital city", "the continent", "the sum", "the difference",
           "the number in words", "the sentiment", "the words in alphabetical order", "the uppercase version",
           "the second letter", "the number of letters", "an antonym", "the common element", "the bigger one",
           "a synonym", "the heavier animal", "the main idea", "the answer", "each output", "the result"]
TAILS = ["of the input", "of each word", "of the given word", "for every input", "of the two animals",
         "in one word", "as a single word", "from the input", "of the pair", "for each of the inputs",
         "without explanation", "in lowercase", "of the sentence", "of the two numbers", "of the country",
         "as shown in the examples", "like the examples", "of every one of the inputs", "", ""]
FILLER = ["quickly", "carefully", "exactly", "only", "simply", "again", "briefly", "clearly", "always", "never",
          "first", "then", "also", "just", "given", "following", "below", "above", "same", "other", "both", "every",
          "each", "whole", "single", "short", "long", "small", "big", "english", "french", "spanish", "german",
          "formal", "informal", "positive", "negative", "neutral", "numeric", "textual"]
INPUTS = ["cat, elephant", "whale, mouse", "ant, horse", "giraffe, rabbit", "dog, bee", "interior", "real",
          "quick", "accept", "include", "France", "Kenya", "42 + 17", "seven", "walked", "happy day", "apples"]


def instruction(rng: random.Random) -> str:
    words = [rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
    if rng.random() < 0.6:
        words.insert(1, rng.choice(FILLER))
    if rng.random() < 0.4:
        words.append(" ".join(rng.sample(FILLER, 2)))
    return " ".join(w for w in words if w) + "."


# -- the fill ---------------------------------------------------------------------------------------------
def cached_db(args: argparse.Namespace) -> Path:
    cache = Path(args.cache_dir or Path(tempfile.gettempdir()) / "iz-bench-cache")
    cache.mkdir(parents=True, exist_ok=True)
    name = f"history-v{FILL_VERSION}-{args.runs}x{args.per_run}-out{args.outputs}-seed{args.seed}.db"
    return cache / name


def fill(path: Path, n_runs: int, per_run: int, n_outputs: int, seed: int) -> float:
    """Write the history through the store's API; returns the seconds it took."""
    from engine.store import open_history
    from engine.usage import Usage

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    h = open_history(path)
    h.db.execute("PRAGMA synchronous = OFF")  # this connection only: a throwaway file, filled once
    endpoint = {"name": "bench", "base_url": "http://127.0.0.1:9/v1", "model": "bench-model", "api": "chat"}
    for r in range(n_runs):
        task, method = TASKS[r % len(TASKS)], METHODS[r % len(METHODS)]
        with h.transaction():
            settings = {"method": method, "n_init": 25, "batch_size": 25, "n_dev": n_outputs, "n_test": n_outputs,
                        "budget_evaluations": per_run, "seed": r, "instructions": []}
            rid = h.create_run(task, method, settings, endpoint)
            seen: dict[str, int] = {}
            devs: dict[int, float] = {}
            best_id, best, best_text = 0, -1.0, ""
            evaluations = calls = saved = 0
            for pos in range(per_run):
                text = rng.choice(list(seen)) if seen and rng.random() < 0.2 else instruction(rng)
                z = [round(rng.uniform(-1, 1), 4) for _ in range(10)] if method in ("instructzero", "random") else None
                cid = h.add_candidate(rid, pos // 25, pos, z, text)
                dup = seen.get(text)
                if dup is not None:
                    per = [0.0] * n_outputs
                    outputs: list[dict[str, Any]] = []
                    usage = Usage.reused(n_outputs)
                    saved += n_outputs
                else:
                    per = [float(rng.random() < 0.5) for _ in range(n_outputs)]
                    outputs = [{"example_index": i, "input": rng.choice(INPUTS), "answers": ["elephant"],
                                "output": "elephant" if ok else "I am not sure which one.", "score": ok,
                                "cache_hit": False, "prompt_tokens": 40, "completion_tokens": 4, "latency_s": 0.2}
                               for i, ok in enumerate(per)]
                    usage = Usage.of_answers(outputs)
                    evaluations += 1
                    calls += n_outputs
                    seen[text] = cid
                dev = sum(per) / len(per) if dup is None else devs[dup]
                devs[cid] = dev
                h.record_score(cid, dev_score=dev, scores=per, outputs=outputs, usage=usage, duplicate_of=dup)
                if dev > best:
                    best_id, best, best_text = cid, dev, text
            test_out = [{"example_index": i, "input": rng.choice(INPUTS), "answers": ["x"], "output": "x",
                         "score": 1.0, "cache_hit": False} for i in range(n_outputs)]
            test = round(rng.random(), 3)
            h.add_score(best_id, kind="test", split="test", endpoint=endpoint, metric="contains", score=test,
                        outputs=test_out)
            if r % 10 == 0:
                for cid in list(seen.values())[:3]:
                    h.add_score(cid, kind="rerank", split="test", endpoint=endpoint, metric="contains",
                                score=round(rng.random(), 3), outputs=test_out)
            for cid in rng.sample(list(seen.values()), k=max(1, per_run // 100)):
                h.set_mark(cid, star=True)
            h.update_run(rid, status="finished", evaluations=evaluations, evaluations_saved=per_run - evaluations,
                         calls=calls + n_outputs, calls_saved=saved, best_candidate_id=best_id,
                         best_instruction=best_text, best_dev_score=best, test_score=test, seconds=95.0,
                         started_at="2026-11-01T00:00:00.000+00:00", finished_at="2026-11-01T00:01:35.000+00:00")
        if (r + 1) % 100 == 0:
            print(f"  filled {r + 1}/{n_runs} runs ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    h.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    h.close()
    return time.perf_counter() - t0


# -- timing -----------------------------------------------------------------------------------------------
def median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up (and the value to describe)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def store_rows(db: Path, repeats: int) -> list[tuple[str, float, str]]:
    from engine.config import revive
    from engine.export import export_data
    from engine.store import open_history
    from iz_tui.formatting import dedupe_top

    h = open_history(db)
    rows: list[tuple[str, float, str]] = []
    run_ids = [r["id"] for r in h.db.query("select id from runs order by id")]
    mid = run_ids[len(run_ids) // 2]

    def add(label: str, fn: Callable[[], Any], describe: Callable[[Any], str] = lambda r: f"{len(r)} rows") -> None:
        ms, result = median_ms(fn, repeats)
        rows.append((label, ms, describe(result)))

    add("search 'larger animal' (bm25)", lambda: h.search("larger animal"))
    add("search 'synonym' (bm25)", lambda: h.search("synonym"))
    add("first page (all, by dev score)", lambda: h.search(order="score"))
    add("filtered page (task+method+min 0.5)",
        lambda: h.search(task="larger_animal", method="instructzero", min_score=0.5, order="score"))
    add("page sorted by rerank/test score", lambda: h.search(order="rerank"))
    if "group" in inspect.signature(h.search).parameters:  # the history's "group" view (key g), when there
        add("page grouped by instruction (g, by dev score)", lambda: h.search(order="score", group=True))
        add("grouped, sorted by rerank/test score", lambda: h.search(order="rerank", group=True))
        add("grouped, starred only (a sparse filter)", lambda: h.search(order="score", group=True, starred=True))
        add("grouped, search 'larger animal'", lambda: h.search("larger animal", group=True))
    add("run detail (iz show: run + candidates)", lambda: export_data(h, run_id=mid),
        lambda r: f"{len(r['candidates'])} candidates")
    cid = h.run(mid)["best_candidate_id"]
    add("candidate detail (scores + outputs)", lambda: (h.candidate(cid), h.scores(cid), h.outputs(cid)),
        lambda r: f"{len(r[2])} outputs")

    outs = [{"example_index": i, "input": "cat, whale", "answers": ["whale"], "output": "whale", "score": 1.0,
             "cache_hit": False, "prompt_tokens": 40, "completion_tokens": 3, "latency_s": 0.2} for i in range(20)]

    def rerank_bookkeeping() -> list[dict[str, Any]]:
        ids = dedupe_top(h.candidates(mid, status="scored"), 3)
        for c in ids:
            cand = h.candidate(c)
            run = h.run(cand["run_id"])
            stored = revive(run)
            h.add_score(c, kind="rerank", split="test", endpoint={"name": stored.endpoint_name},
                        metric="contains", score=0.5, outputs=outs)
        return h.search(run_id=mid, order="rerank")

    add("rerank bookkeeping (top 3, writes, re-sort)", rerank_bookkeeping)
    h.close()
    return rows


# -- the TUI ----------------------------------------------------------------------------------------------
class _StreamEngine:
    """Enough of an EngineClient for the run screen: a run that starts and whose events the benchmark posts."""

    proc = None
    dead = None

    def __init__(self, on_event: Callable[[Any], Any]) -> None:
        self.on_event = on_event
        self.started = False

    @property
    def alive(self) -> bool:
        return self.started

    async def start(self) -> _StreamEngine:
        self.started = True
        return self

    async def start_run(self, task: str, **_: Any) -> int:
        return 999_999

    async def cancel_run(self, run_id: int) -> bool:
        return True

    async def close(self) -> None:
        self.started = False


def paper_run_events(run_id: int, rng: random.Random) -> list[list[Any]]:
    """A paper-size run's events (25 Sobol + 5 x 25 BO), grouped as the engine sends them: each batch's
    proposals at once, then one scored candidate at a time."""
    from engine.wire.events import (
        CandidateProposed,
        CandidateScored,
        IterationDone,
        RunFinished,
        RunStarted,
        Status,
    )

    groups: list[list[Any]] = [[RunStarted(run_id, "larger_animal", "instructzero", 150),
                                Status(run_id, "writing 25 instructions from soft prompts")]]
    best, best_id, cid = -1.0, 0, 10_000
    for it in range(6):
        batch = []
        for j in range(25):
            cid += 1
            batch.append((cid, it * 25 + j, instruction(rng)))
        groups.append([CandidateProposed(run_id, c, it, pos, text) for c, pos, text in batch])
        for c, pos, text in batch:
            score = round(rng.random(), 2)
            is_best = score > best
            if is_best:
                best, best_id = score, c
            groups.append([CandidateScored(run_id, c, it, pos, text, score, False, None, pos + 1, 150,
                                           (pos + 1) * 20, 0, best, best_id, is_best)])
        groups.append([IterationDone(run_id, it, best, (it + 1) * 25)])
    summary = {"run_id": run_id, "task": "larger_animal", "method": "instructzero", "status": "finished",
               "best_candidate_id": best_id, "best_instruction": "x", "dev_score": best, "test_score": 0.5,
               "evaluations": 150, "calls": 3000, "calls_saved": 0, "tokens": 0, "seconds": 95.0}
    groups.append([RunFinished(run_id, "finished", None, summary)])
    return groups


async def tui_rows(db: Path, repeats: int, key_interval: float, event_interval: float) -> list[tuple[str, float, str]]:
    from textual import events
    from textual.binding import Binding

    from engine.config import Config
    from iz_tui.app import IZApp
    from iz_tui.requests import RunRequest
    from iz_tui.screens.help import HelpScreen
    from iz_tui.screens.history import HistoryScreen
    from iz_tui.screens.run import RunScreen

    ticks: list[float] = []
    frames: list[tuple[float, float, Any]] = []  # (when, CPU then, screen) of every frame sent to the driver

    class BenchApp(IZApp):
        CSS_PATH = str(ROOT / "iz_tui" / "iz.tcss")  # a subclass looks for it beside its own module
        BINDINGS = [*IZApp.BINDINGS, Binding("f12", "tick", "tick", show=False)]

        def action_tick(self) -> None:
            ticks.append(time.perf_counter())

        def _display(self, screen: Any, renderable: Any) -> None:
            frames.append((time.perf_counter(), time.process_time(), screen))
            super()._display(screen, renderable)

    def painted(cls: type, after: float) -> tuple[float, float] | None:
        """When the first frame of a ``cls`` screen drawn at or after ``after`` went out, and the CPU time then
        (None while there is none: ``until(pilot, lambda: painted(...))`` waits for it)."""
        return next(((t, cpu) for t, cpu, screen in frames if t >= after and isinstance(screen, cls)), None)

    async def until(pilot: Any, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = cond()
            except Exception:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {cond}")
            await asyncio.sleep(0.002)

    def listed(n_listed: int, n_rows: int) -> str:
        """The candidates a page lists and the rows the table holds of them (it may add them a page at a time)."""
        return f"{n_rows} rows" if n_rows == n_listed else f"{n_listed} listed, {n_rows} rows added"

    rows: list[tuple[str, float, str]] = []
    app = BenchApp(history_path=db, config=Config(), engine_factory=_StreamEngine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # The baseline: a screen with no data (help), key -> painted: what Textual itself takes on this machine.
        helps = []
        help_cpu = []
        for i in range(repeats + 1):
            frames.clear()
            t, c = time.perf_counter(), time.process_time()
            await pilot.press("question_mark")
            at, cpu = await until(pilot, lambda t=t: painted(HelpScreen, t))
            if i:
                helps.append((at - t) * 1000)
                help_cpu.append((cpu - c) * 1000)
            await pilot.pause()
            while isinstance(app.screen, HelpScreen):
                await pilot.press("escape")
                await pilot.pause()
        rows.append(("TUI: baseline, help screen (key ? -> painted)", statistics.median(helps),
                     f"no data: Textual's own cost of a screen here (CPU {statistics.median(help_cpu):.0f} ms)"))

        # The history screen's first page: key h -> the table filled and painted.
        firsts = []
        first_cpu = []
        n_rows = n_listed = 0
        reloads: list[float] = []  # of which: History.search + HistoryTable.fill (the part that depends on data)
        reloaded: list[float] = []  # when each load ended
        class_reload = HistoryScreen.reload

        def counted_reload(self: Any, keep_cursor: bool = True) -> None:
            t = time.perf_counter()
            class_reload(self, keep_cursor)
            reloaded.append(time.perf_counter())
            reloads.append((reloaded[-1] - t) * 1000)

        HistoryScreen.reload = counted_reload  # type: ignore[method-assign]
        per_open: list[float] = []
        n_reloads: list[int] = []
        for i in range(repeats + 1):
            reloads.clear()
            reloaded.clear()
            frames.clear()
            t, c = time.perf_counter(), time.process_time()
            await pilot.press("h")
            screen = await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.is_mounted
                                 and app.screen.table.row_count > 0 and reloaded and app.screen)
            at, cpu = await until(pilot, lambda: painted(HistoryScreen, reloaded[0]))
            if i:
                firsts.append((at - t) * 1000)
                first_cpu.append((cpu - c) * 1000)
                per_open.append(sum(reloads))
                n_reloads.append(len(reloads))
            await pilot.pause()
            n_rows = screen.table.row_count
            n_listed = len(screen.table.candidates)
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, HistoryScreen))
        HistoryScreen.reload = class_reload  # type: ignore[method-assign]
        rows.append(("TUI: history first page (key h -> painted)", statistics.median(firsts),
                     f"{listed(n_listed, n_rows)}; query + table fill {statistics.median(per_open):.0f} ms in "
                     f"{statistics.median(n_reloads):.0f} load(s); CPU {statistics.median(first_cpu):.0f} ms; "
                     f"slowest of {len(firsts)} {max(firsts):.0f} ms"))

        # A search typed into it: the debounce firing -> the rows shown and painted.
        await pilot.press("h")
        screen = await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.is_mounted
                             and app.screen.table.row_count > 0 and app.screen)
        fired: list[float] = []
        done: list[float] = []
        spent: list[float] = []
        fb = screen.filter_bar
        search_now = fb._search_now
        reload = screen.reload

        fired_cpu: list[float] = []

        def timed_search_now() -> None:
            fired.append(time.perf_counter())
            fired_cpu.append(time.process_time())
            search_now()

        def timed_reload(keep_cursor: bool = True) -> None:
            t = time.perf_counter()
            reload(keep_cursor)
            done.append(time.perf_counter())
            spent.append((done[-1] - t) * 1000)

        fb._search_now = timed_search_now  # type: ignore[method-assign]
        screen.reload = timed_reload  # type: ignore[method-assign]
        searches = []
        search_cpu = []
        key_to_rows = []
        search_reload: list[float] = []
        shown = ""
        for i in range(repeats + 1):
            await pilot.press("slash")
            for word in ("larger", "animal"):
                fired.clear()
                done.clear()
                typed = " " + word if word == "animal" else word
                await pilot.press(*typed[:-1])
                frames.clear()
                t_key = time.perf_counter()
                await pilot.press(typed[-1])
                await until(pilot, lambda: fired and done and done[-1] > fired[-1])
                shown_at, cpu = await until(pilot, lambda: painted(HistoryScreen, done[-1]))
                if i:
                    searches.append((shown_at - fired[-1]) * 1000)
                    search_cpu.append((cpu - fired_cpu[-1]) * 1000)
                    key_to_rows.append((shown_at - t_key) * 1000)
                    search_reload.append(spent[-1])
                await pilot.pause()
                shown = listed(len(screen.table.candidates), screen.table.row_count)
            fired.clear()
            done.clear()
            screen.filter_bar.search_box.value = ""  # back to every candidate before the next repeat
            await until(pilot, lambda: fired and done and done[-1] > fired[-1])
            await pilot.pause()
        rows.append(("TUI: search typed (debounce fired -> painted)", statistics.median(searches),
                     f"{shown}; query + table fill {statistics.median(search_reload):.0f} ms; last key -> "
                     f"painted {statistics.median(key_to_rows):.0f} ms incl. the 150 ms debounce; CPU "
                     f"{statistics.median(search_cpu):.0f} ms; slowest of {len(searches)} {max(searches):.0f} ms"))
        while isinstance(app.screen, HistoryScreen):  # the first escape leaves the search box
            await pilot.press("escape")
            await pilot.pause()

        # Responsiveness while a run streams its events: keys at a steady rate, record when each is handled.
        app.open_run(RunRequest("larger_animal", "instructzero", "embedded", {"budget_evaluations": 150}))
        run_screen = await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id
                                 and app.screen)
        await pilot.pause()
        groups = paper_run_events(run_screen.run_id, random.Random(1))
        sent: list[float] = []
        ticks.clear()
        stop = asyncio.Event()

        async def keys() -> None:
            driver = app._driver
            assert driver is not None
            while not stop.is_set():
                ev = events.Key("f12", None)
                ev.set_sender(app)
                sent.append(time.perf_counter())
                driver.send_message(ev)
                await asyncio.sleep(key_interval)

        group_sent: list[tuple[float, str]] = []  # when each event group went in, named by its first event

        async def stream() -> None:
            for group in groups:
                group_sent.append((time.perf_counter(), type(group[0]).__name__))
                for ev in group:
                    app._engine_callback(ev)
                await asyncio.sleep(event_interval)

        t0 = time.perf_counter()
        key_task = asyncio.create_task(keys())
        await asyncio.sleep(0.3)  # a baseline of keys with no events
        baseline_ticks = len(ticks)
        c0 = time.process_time()
        await stream()
        await until(pilot, lambda: run_screen.state == "finished")
        streamed_s = time.perf_counter() - t0 - 0.3
        streamed_cpu = time.process_time() - c0
        await asyncio.sleep(0.3)
        stop.set()
        await key_task
        await until(pilot, lambda: len(ticks) >= len(sent), timeout=30)
        gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
        lat = [(t - s) * 1000 for s, t in zip(sent, ticks, strict=False)]
        base_gap = statistics.median(gaps[: max(baseline_ticks - 1, 1)])
        worst = max(range(len(gaps)), key=gaps.__getitem__)
        before = [name for at, name in group_sent if at <= ticks[worst + 1]]
        n_events = sum(len(g) for g in groups)
        rows.append(("TUI: largest gap between keys during a run", max(gaps),
                     f"keys every {key_interval * 1000:.0f} ms (median gap {statistics.median(gaps):.0f} ms, "
                     f"{base_gap:.0f} before events); {n_events} events in {streamed_s:.1f} s "
                     f"(CPU {streamed_cpu:.1f} s); "
                     f"key latency median {statistics.median(lat):.0f} / max {max(lat):.0f} ms; the largest "
                     f"after the events of {before[-1] if before else 'none'} "
                     f"({len(before)} of {len(groups)} groups in)"))
    return rows


# -- start-up ---------------------------------------------------------------------------------------------
COLD_START = """
import time
from iz_tui.app import IZApp
class A(IZApp):
    CSS_PATH = IZApp.CSS_PATH if "/" in IZApp.CSS_PATH else __import__("iz_tui").__path__[0] + "/iz.tcss"
    def on_ready(self):
        self.exit()
A().run(headless=True, size=(120, 40))
"""

#: A fresh process: the first screen up, a pause, then ``h``; prints ms from the key to the first frame with rows.
#: Nothing of the history is imported beforehand: what the person's first ``h`` after start costs.
FIRST_OPEN = """
import asyncio, sys, time
from pathlib import Path
from engine.config import Config
from iz_tui.app import IZApp
shown = []
class A(IZApp):
    CSS_PATH = IZApp.CSS_PATH if "/" in IZApp.CSS_PATH else __import__("iz_tui").__path__[0] + "/iz.tcss"
    def _display(self, screen, renderable):
        try:
            if not shown and type(screen).__name__ == "HistoryScreen" and screen.table.row_count:
                shown.append(time.perf_counter())
        except Exception:
            pass  # not composed yet
        super()._display(screen, renderable)
async def main():
    app = A(history_path=Path(sys.argv[1]), config=Config())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(float(sys.argv[2]))
        t = time.perf_counter()
        await pilot.press("h")
        while not shown:
            await asyncio.sleep(0.001)
        print((shown[0] - t) * 1000)
asyncio.run(main())
"""
#: Seconds between the first screen and the key in FIRST_OPEN (a person reads the home screen first).
FIRST_OPEN_AFTER_S = 1.0


def startup_rows(home: Path, repeats: int) -> list[tuple[str, float, str]]:
    python = sys.executable
    iz = str(Path(python).with_name("iz"))
    env = {**os.environ, "IZ_HOME": str(home), "IZ_CONFIG": str(home / "config.toml"), "PYTHONPATH": str(ROOT)}
    cmds = {"pass": [python, "-c", "pass"], "tui": [python, "-c", COLD_START], "help": [iz, "--help"]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(repeats + 1):
        for name, cmd in cmds.items():  # alternately, so load changes hit all three alike
            t = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, cwd=str(home))
            dt = (time.perf_counter() - t) * 1000
            if proc.returncode != 0:
                raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-500:]}")
            if i:
                times[name].append(dt)
    base = statistics.median(times["pass"])
    firsts = []
    for _ in range(repeats):
        proc = subprocess.run([python, "-c", FIRST_OPEN, str(home / "history.db"), str(FIRST_OPEN_AFTER_S)], env=env,
                              capture_output=True, cwd=str(home), text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"first opening failed: {proc.stderr[-500:]}")
        firsts.append(float(proc.stdout.split()[-1]))
    return [
        ("TUI: history, first opening after start", statistics.median(firsts),
         f"a fresh process each time, h {FIRST_OPEN_AFTER_S:.0f} s after the first screen; slowest of "
         f"{len(firsts)} {max(firsts):.0f} ms"),
        ("start: python -c pass (baseline)", base, "x1.0"),
        ("start: iz cold start to the first screen", statistics.median(times["tui"]),
         f"x{statistics.median(times['tui']) / base:.1f} python -c pass"),
        ("start: iz --help", statistics.median(times["help"]),
         f"x{statistics.median(times['help']) / base:.1f} python -c pass"),
    ]


def grouped_before_after(db: Path, ref: str, repeats: int) -> None:
    """The grouped pages of ``History.search(group=True)`` against the grouped SQL of ``ref``, alternately.

    The old SQL runs on the same (migrated) store through its module-level ``_group_sql``; both must return the
    same candidates in the same order, or the comparison stops."""
    import importlib.util

    from engine.store import open_history
    from engine.store.history import fts_query

    text = subprocess.run(["git", "show", f"{ref}:engine/store/history.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="iz-grouped-before-"))
    (folder / "old_history.py").write_text(text)
    spec = importlib.util.spec_from_file_location("old_history", folder / "old_history.py")
    old = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(old)  # type: ignore[union-attr]
    h = open_history(db)
    base = "c.status = 'scored' and c.duplicate_of is null"
    fts = " join candidates_fts f on f.rowid = c.id"
    cases = [  # label, search() keywords, the old builder's where / args / joins / rank
        ("by dev score (the default)", {}, base, [], "", "null", "score"),
        ("newest first", {"order": "newest"}, base, [], "", "null", "newest"),
        ("by rerank/test score", {"order": "rerank"}, base, [], "", "null", "rerank"),
        ("by manual rank", {"order": "rank"}, base, [], "", "null", "rank"),
        ("task filter", {"task": "larger_animal"}, base + " and r.task = ?", ["larger_animal"], "", "null", "score"),
        ("min dev score 0.5", {"min_score": 0.5}, base + " and c.dev_score >= ?", [0.5], "", "null", "score"),
        ("starred only", {"starred": True}, base + " and coalesce(m.star, 0) = 1", [], "", "null", "score"),
        ("repeats included", {"duplicates": True}, "c.status = 'scored'", [], "", "null", "score"),
        ("search 'larger animal'", {"query": "larger animal"}, base + " and candidates_fts match ?",
         [fts_query("larger animal")], fts, "bm25(candidates_fts)", "relevance"),
    ]
    print(f"\ngrouped pages (500 groups), {ref} against this tree, alternately, median of {repeats}:")
    print(f"{'grouped page':<28} {'before ms':>10} {'after ms':>9} {'after/before':>13}")
    for label, kw, where, args, joins, rank, order in cases:
        before, after = [], []
        for _ in range(repeats):
            sql, a = old._group_sql(where, list(args), joins, rank, order, 500)
            t = time.perf_counter()
            old_ids = [r[0] for r in h.db.execute(sql, a).fetchall()]
            before.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            new_ids = [r["id"] for r in h.search(group=True, **{"order": order, **kw})]
            after.append((time.perf_counter() - t) * 1000)
            if old_ids != new_ids:
                raise SystemExit(f"grouped page {label!r}: {ref} and this tree list different candidates")
        b, a_ms = statistics.median(before), statistics.median(after)
        print(f"{label:<28} {b:>10.1f} {a_ms:>9.1f} {a_ms / b:>13.2f}")
    h.close()
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--per-run", type=int, default=100)
    ap.add_argument("--outputs", type=int, default=10, help="per-example outputs of each scored candidate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--refill", action="store_true", help="fill again even if a cached file exists")
    ap.add_argument("--skip-store", action="store_true", help="leave out the store rows (the TUI and start-up only)")
    ap.add_argument("--skip-tui", action="store_true")
    ap.add_argument("--skip-start", action="store_true")
    ap.add_argument("--grouped-before", metavar="REF", default=None,
                    help="also time the grouped pages against the grouped SQL of engine/store/history.py at this git "
                         "ref, alternately on the same store (same rows asserted)")
    ap.add_argument("--key-interval", type=float, default=0.02, help="seconds between keys during the run")
    ap.add_argument("--event-interval", type=float, default=0.01, help="seconds between event groups")
    args = ap.parse_args()

    from engine.store.migrations import known_names

    cached = cached_db(args)
    n_cands = args.runs * args.per_run
    if args.refill or not cached.exists():
        print(f"filling {cached} ({n_cands} candidates in {args.runs} runs)...", file=sys.stderr)
        fill_s = fill(cached, args.runs, args.per_run, args.outputs, args.seed)
        fill_note = f"filled in {fill_s:.0f} s ({fill_s / n_cands * 1000:.2f} ms a candidate)"
    else:
        fill_note = f"cached fill {cached}"
    work = Path(tempfile.mkdtemp(prefix="iz-hist-scale-"))
    try:
        db = work / "history.db"
        shutil.copyfile(cached, db)
        t = time.perf_counter()
        from engine.store import open_history

        h = open_history(db)  # applies this release's pending migrations (indexes) to the copy
        migrate_s = time.perf_counter() - t
        n = h.db.execute("select count(*) from candidates").fetchone()[0]
        n_out = h.db.execute("select count(*) from outputs").fetchone()[0]
        h.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        h.close()
        size = db.stat().st_size
        print(f"history: {n} candidates, {n_out} outputs, {args.runs} runs; {size / 1e6:.0f} MB = "
              f"{size / n / 1024:.2f} KiB a candidate; {fill_note}; opening the copy (migrations "
              f"{', '.join(known_names())}) took {migrate_s:.1f} s; {os.cpu_count()} CPUs; median of "
              f"{args.repeats}")
        rows = [] if args.skip_store else store_rows(db, args.repeats)
        if args.grouped_before:
            grouped_before_after(db, args.grouped_before, args.repeats)
        if not args.skip_tui:
            rows += asyncio.run(tui_rows(db, args.repeats, args.key_interval, args.event_interval))
        if not args.skip_start:
            rows += startup_rows(work, args.repeats)
        print()
        base = next((ms for label, ms, _ in rows if label.startswith("TUI: baseline")), None)
        print(f"{'measure':<46} {'median ms':>10} {'x target':>9} {'x base':>7}  notes")
        for label, ms, note in rows:
            ratio = "" if label.startswith("start:") else f"{ms / TARGET_MS:.2f}"
            xb = f"{ms / base:.2f}" if base and label.startswith("TUI:") else ""
            print(f"{label:<46} {ms:>10.1f} {ratio:>9} {xb:>7}  {note}")
        print(f"{'file size per candidate (KiB)':<46} {size / n / 1024:>10.2f} {'':>9}  {size / 1e6:.0f} MB in all")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
