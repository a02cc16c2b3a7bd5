"""Engine speed: concurrent scoring, the engine's own overhead, the generator's throughput, calls paid per run.

    python bench/engine_speed.py [--parts a b c d] [--latency 0.2] [--repeats 3] [--profile] [--models NAME ...]
                                 [--paper]

Everything but (c) goes through the real engine process (``EngineClient``, as the TUI and the CLI do) in a
throwaway IZ_HOME whose config.toml points the endpoint profiles at a local OpenAI-compatible test server on
127.0.0.1 that answers every request after a fixed latency (``--latency``, 200 ms). Each part prints a table with
the figures and their ratio to the baseline measured in the same run:

(a) scoring one instruction on 20 dev examples (a ``manual`` run: one instruction, n_dev 20, n_test 0), timed from
    ``start_run`` to ``run_finished``, with the profile's ``concurrency`` at 1, at its default and at 20 (= n_dev),
    alternately; baseline: one latency. Target: the default under 2x one latency.
(b) the engine's overhead at the paper's budget (150 evaluations = 25 Sobol + 5 BO iterations x 25, dev 20, test
    100) with an instant generator: the share of the run's wall time that is neither the generator working nor a
    black-box request in flight (union of the server's request intervals), i.e. the GP fit, the acquisition
    optimisation, store writes and the protocol. The engine process is started through a wrapper
    (``EngineClient(python=...)``, this file with ``--engine-stub``) that replaces ``make_run_generator`` by a stub
    returning distinct instructions at once and times ``Engine._next_points`` (the BO step): no product hook.
    With ``--profile`` a second run (the same budget against a 20 ms server; about 2 more minutes) is profiled
    with cProfile (the main thread and the BO worker thread) and the top items are printed. Target: overhead
    under 5%.
(c) generator instructions per second, one batch of ``--gen-n`` soft prompts against the same prompts one at a
    time, alternately, per catalog model (each in its own process; ``--models``, default: every pulled one).
(d) paid calls per run / (evaluations x dev examples), per method, with the bundled SmolLM2 generator against a
    0 ms server (latency changes no count); a small budget by default (``--budget 10``: 5 Sobol + BO batches of 2,
    dev 20, test 20), ``--paper`` for 150 evaluations (25 + 5 x 25, dev 20, test 100). Each method runs with racing
    on (the default) and off (baseline: every dev example asked), each on its own model name on the server, so no
    run is answered from another's cache. Target: at most 0.7 at the paper budget.

Machines here are noisy (2 cores, other jobs): compare figures inside one table.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FORWARD = "I gave a friend an instruction"  # the APE proposal template's words (engine.ape)
PAPER = {"n_init": 25, "n_iterations": 5, "batch_size": 25, "n_dev": 20, "n_test": 100}


# -- the test server ----------------------------------------------------------------------------------------
def _truth() -> dict[str, str]:
    """larger_animal's right answer per input (the task every run here uses)."""
    from engine.tasks import load_task

    return {ex.input: ex.answers[0] for ex in load_task("larger_animal").examples}


TRUTH: dict[str, str] = {}


class LatencyServer:
    """An OpenAI-compatible server (chat and completions) answering every request after ``latency`` seconds.

    Instructions differ in quality, as real ones do: each gets an accuracy p in [0, 1) from a hash of its text,
    and an example is answered with the right animal (larger_animal's data) when a hash of the whole prompt falls
    below p, else with the other one; so the GP has something to fit, and racing meets the spread of scores it
    would meet on a real task rather than a field of equals. APE proposals get a distinct instruction per request
    seed. Every request's (arrival, answer sent) times are kept, on the monotonic clock all processes share."""

    def __init__(self, latency: float) -> None:
        TRUTH.update(TRUTH or _truth())
        self.latency = latency
        self.intervals: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                t0 = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = json.dumps(body.get("messages") or body.get("prompt"))
                if FORWARD in prompt:
                    text = f" write the answer for input number {body.get('seed')}.\nInput: echo"
                else:
                    last = prompt.rsplit("Input: ", 1)[-1].split("\\n", 1)[0]
                    options = [o.strip() for o in last.split(",")] or ["x"]
                    instruction = prompt.split("Instruction: ", 1)[-1].split("\\n", 1)[0]
                    p = zlib.crc32(instruction.encode()) / 2**32
                    right = TRUTH.get(last)
                    if right is None:
                        text = options[zlib.crc32(prompt.encode()) % len(options)]
                    elif zlib.crc32(prompt.encode()) / 2**32 < p:
                        text = right
                    else:
                        text = next((o for o in options if o != right), "no idea")
                if srv.latency:
                    time.sleep(srv.latency)
                chat = self.path.endswith("/chat/completions")
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                data = json.dumps({"choices": [choice], "usage": {"prompt_tokens": 40, "completion_tokens": 3}})
                raw = data.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                with srv.lock:
                    srv.intervals.append((t0, time.monotonic()))

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- inside the engine process (part b) ---------------------------------------------------------------------
class StubGenerator:
    """Stands in for the local model: distinct instructions at once; every call's interval goes to the log."""

    catalog_name = "stub"

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.n = 0

    def _log(self, kind: str, t0: float) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{kind} {t0} {time.monotonic()}\n")

    def projection(self, *args: Any, **kwargs: Any) -> str:
        return "projection"

    def instructions(self, Z: Any, demos: Any, proj: Any, n_soft_tokens: int,  # noqa: N803
                     sample: Any = None, style: str | None = None) -> list[str]:
        t0 = time.monotonic()
        out = [f"Write the answer the examples show, variant {self.n + i}." for i in range(len(Z))]
        self.n += len(out)
        self._log("generator", t0)
        return out

    def sample(self, demos: Any, n: int, temperature: float, seed: int, style: str | None = None) -> list[str]:
        t0 = time.monotonic()
        out = [f"Write the answer the examples show, sample {self.n + i}." for i in range(n)]
        self.n += n
        self._log("generator", t0)
        return out


def engine_stub_main(argv: list[str]) -> int:
    """``engine_speed.py --engine-stub -m engine serve``: the engine process with the stub generator.

    IZ_BENCH_STUB_LOG: where the generator's and the BO step's intervals go; IZ_BENCH_PROFILE: write a cProfile
    of the main thread and of the BO worker thread there when the engine exits."""
    import cProfile
    import pstats

    import engine.generator_setup as setup
    from engine.__main__ import main as engine_main
    from engine.runner import Engine

    log_path = os.environ["IZ_BENCH_STUB_LOG"]
    profile_path = os.environ.get("IZ_BENCH_PROFILE")
    setup.make_run_generator = lambda settings: StubGenerator(log_path)  # type: ignore[assignment]
    bo_prof = cProfile.Profile() if profile_path else None
    next_points = Engine._next_points

    def timed_next_points(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        if bo_prof is not None:
            bo_prof.enable()  # profiles this worker thread only
        try:
            return next_points(self, *args, **kwargs)
        finally:
            if bo_prof is not None:
                bo_prof.disable()
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(f"bo {t0} {time.monotonic()}\n")

    Engine._next_points = timed_next_points  # type: ignore[method-assign]
    args = argv[argv.index("engine") + 1:] if "engine" in argv else ["serve"]
    if not profile_path:
        return engine_main(args)
    prof = cProfile.Profile()
    prof.enable()
    try:
        return engine_main(args)
    finally:
        prof.disable()
        stats = pstats.Stats(prof)
        if bo_prof is not None and bo_prof.getstats():
            stats.add(bo_prof)
        stats.dump_stats(profile_path)


# -- helpers ---------------------------------------------------------------------------------------------
def union_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by at least one interval."""
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def make_home(endpoints: dict[str, dict[str, Any]], generator: str | None = None) -> Path:
    """A throwaway IZ_HOME with a config.toml holding these endpoint profiles (the first is the default)."""
    from engine import paths

    home = Path(tempfile.mkdtemp(prefix="iz-engine-speed-"))
    atexit.register(shutil.rmtree, home, True)
    lines = [f'default_endpoint = "{next(iter(endpoints))}"', ""]
    if generator:
        lines += ["[generator]", f'model = "{generator}"', ""]
    for name, prof in endpoints.items():
        lines.append(f"[endpoints.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in prof.items()]
        lines.append("")
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")
    os.environ.setdefault("IZ_MODELS", str(paths.models_dir()))  # pulled models and caches stay where they are
    os.environ.setdefault("IZ_CACHE", str(paths.cache_dir()))
    return home


def engine_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "IZ_HOME": str(home), "IZ_CONFIG": str(home / "config.toml"), "IZ_LOG_LEVEL": "WARNING",
            **extra}


async def timed_run(client: Any, task: str, **start: Any) -> tuple[float, float, float, Any]:
    """(start, end, seconds, last event) of one run, from start_run to its run_finished / run_failed."""
    from engine.wire.events import RunFailed

    t0 = time.monotonic()
    run_id = await client.start_run(task, **start)
    last = await client.wait_run(run_id)
    t1 = time.monotonic()
    if isinstance(last, RunFailed):
        raise RuntimeError(f"run {run_id} failed: {last.problem}")
    return t0, t1, t1 - t0, last


def drain(client: Any) -> None:
    while not client.events.empty():
        client.events.get_nowait()


# -- (a) concurrency --------------------------------------------------------------------------------------
async def part_a(args: argparse.Namespace) -> None:
    from engine.config import EndpointProfile
    from engine.wire.client import EngineClient

    default_c = EndpointProfile.model_fields["concurrency"].default
    server = LatencyServer(args.latency)
    home = make_home({"bench": {"base_url": server.url, "model": "bench-model"},
                      "bench_c1": {"base_url": server.url, "model": "bench-model", "concurrency": 1},
                      "bench_c20": {"base_url": server.url, "model": "bench-model", "concurrency": 20}})
    settings = {"method": "manual", "n_dev": 20, "n_test": 0}
    times: dict[str, list[float]] = {"bench_c1": [], "bench": [], "bench_c20": []}
    try:
        async with EngineClient(env=engine_env(home)) as client:
            for i in range(args.repeats + 1):
                for ep in times:  # alternately; a new instruction each time, so the cache never answers
                    _, _, secs, _ = await timed_run(client, "larger_animal", settings=settings, endpoint=ep,
                                                    instructions=[f"Write the larger animal ({ep} {i})."])
                    if i:  # the first round warms the engine (imports, the HTTP client)
                        times[ep].append(secs)
                    drain(client)
    finally:
        server.close()
    lat = args.latency
    print(f"\n(a) one instruction scored on 20 dev examples, server latency {lat * 1000:.0f} ms, "
          f"median of {args.repeats} (start_run -> run_finished)")
    print(f"{'concurrency':<22} {'seconds':>8} {'x latency':>10} {'x conc. 1':>10}")
    base = statistics.median(times["bench_c1"])
    for ep, label in (("bench_c1", "1"), ("bench", f"{default_c} (default)"), ("bench_c20", "20 (= n_dev)")):
        s = statistics.median(times[ep])
        print(f"{label:<22} {s:>8.3f} {s / lat:>10.2f} {s / base:>10.2f}")
    waves = -(-20 // default_c)
    print(f"target: default under 2x one latency; {waves} waves of {default_c} requests need >= {waves}x")


# -- (b) overhead ------------------------------------------------------------------------------------------
def _stub_python(home: Path) -> str:
    wrapper = home / "engine-stub"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" --engine-stub "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def _overhead_run(latency: float, profile: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    from engine.wire.client import EngineClient

    server = LatencyServer(latency)
    home = make_home({"bench": {"base_url": server.url, "model": "bench-model"}})
    log = home / "stub.log"
    extra = {"IZ_BENCH_STUB_LOG": str(log)}
    if profile is not None:
        extra["IZ_BENCH_PROFILE"] = str(profile)
    try:
        client = EngineClient(env=engine_env(home, **extra), python=_stub_python(home))
        async with client:
            # Warm the engine (imports, the stub "model", the HTTP client) on a one-evaluation run first.
            # Two BO steps, so the GP libraries are imported before the measured run starts.
            await timed_run(client, "larger_animal", settings={"budget_evaluations": 4, "n_init": 2, "batch_size": 1,
                                                              "n_iterations": 2, "n_dev": 2, "n_test": 0,
                                                              "seed": 99})
            drain(client)
            log.write_text("")
            with server.lock:
                server.intervals.clear()
            t0, t1, wall, last = await timed_run(client, "larger_animal", settings=settings)
        with server.lock:
            intervals = list(server.intervals)
    finally:
        server.close()
    marks: dict[str, list[tuple[float, float]]] = {"generator": [], "bo": []}
    for line in log.read_text().splitlines():
        kind, a, b = line.split()
        marks[kind].append((float(a), float(b)))
    busy_bb = union_seconds(intervals, t0, t1)
    gen = union_seconds(marks["generator"], t0, t1)
    bo = union_seconds(marks["bo"], t0, t1)
    either = union_seconds(intervals + marks["generator"], t0, t1)
    return {"wall": wall, "blackbox": busy_bb, "generator": gen, "bo": bo, "overhead": wall - either,
            "requests": len(intervals), "summary": last.summary, "bo_calls": len(marks["bo"])}


def _print_profile(path: Path, top: int) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    idle = ("select.epoll", "_thread.lock", "acquire", "poll", "select")
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in raw.items():
        name = f"{Path(file).name}:{line}({func})" if file != "~" else func
        rows.append((tt, ct, nc, name, file))
    busy = [r for r in rows if not any(w in r[3] for w in idle)]
    total_tt = sum(r[0] for r in busy)
    print(f"top {top} by own time (cProfile, main thread + BO thread; waiting in epoll/locks left out; "
          f"{total_tt:.1f} s of CPU in all):")
    print(f"{'own s':>7} {'share':>6} {'calls':>8}  function")
    for tt, _ct, nc, name, _ in sorted(busy, reverse=True)[:top]:
        print(f"{tt:>7.2f} {tt / total_tt:>6.1%} {nc:>8}  {name}")
    ours = [r for r in rows if "/engine/" in r[4]]
    print(f"top {top} engine functions by cumulative time:")
    print(f"{'cum s':>7} {'calls':>8}  function")
    for _tt, ct, nc, name, _ in sorted(ours, key=lambda r: -r[1])[:top]:
        print(f"{ct:>7.2f} {nc:>8}  {name}")


async def part_b(args: argparse.Namespace) -> None:
    settings = {**PAPER, "method": "instructzero", "seed": 0}
    r = await _overhead_run(args.latency, None, settings)
    s = r["summary"]
    wall = r["wall"]
    print(f"\n(b) engine overhead, paper budget ({s['evaluations']} evaluations, dev 20, test 100), instant stub "
          f"generator, server latency {args.latency * 1000:.0f} ms, concurrency default; {r['requests']} requests")
    print(f"{'part of the wall time':<44} {'seconds':>8} {'share':>7}")
    other = r["overhead"] - r["bo"]
    for label, v in (("run wall time (start_run -> run_finished)", wall),
                     ("black-box requests in flight (union)", r["blackbox"]),
                     ("generator (stub)", r["generator"]),
                     (f"BO step: GP fit + acquisition ({r['bo_calls']} calls)", r["bo"]),
                     ("other engine work (store, protocol, HTTP)", other),
                     ("overhead = neither generator nor black box", r["overhead"])):
        print(f"{label:<44} {v:>8.2f} {v / wall:>7.1%}")
    print(f"target: overhead under 5% of the wall time -> {'met' if r['overhead'] / wall < 0.05 else 'missed'}")
    if not args.profile:
        return
    prof = Path(tempfile.mkdtemp(prefix="iz-engine-prof-")) / "engine.prof"
    atexit.register(shutil.rmtree, prof.parent, True)
    p = await _overhead_run(0.02, prof, settings)
    print(f"profiled run (same budget, 20 ms server): wall {p['wall']:.1f} s, BO {p['bo']:.1f} s, overhead "
          f"{p['overhead']:.1f} s")
    _print_profile(prof, args.top)


# -- (c) the generator -----------------------------------------------------------------------------------
def gen_worker(model: str, n: int, rounds: int, batch_size: int) -> None:
    import torch

    from bench.bench_generator import demos_for
    from engine.generator_setup import make_generator
    from engine.models import catalog

    t0 = time.perf_counter()
    gen = make_generator(catalog.resolve(model), "cpu", 32, batch_size)
    gen.load()
    load_s = time.perf_counter() - t0
    demos, _ = demos_for("antonyms")
    A = gen.projection(10, 5, seed=0)
    Z = torch.rand(n, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    gen.instructions(Z[:1], demos, A, 5)  # warm: the prompt cache, kernels
    batched = single = 0.0
    same = 0
    for _ in range(rounds):  # alternately
        t = time.perf_counter()
        b = gen.instructions(Z, demos, A, 5)
        batched += time.perf_counter() - t
        t = time.perf_counter()
        o = [gen.instructions(z[None], demos, A, 5)[0] for z in Z]
        single += time.perf_counter() - t
        same = sum(x == y for x, y in zip(b, o, strict=True))
    print(json.dumps({"backend": type(gen).__name__, "load_s": load_s, "batched_s": batched, "single_s": single,
                      "same": same, "distinct": len(set(b))}))


def part_c(args: argparse.Namespace) -> None:
    from engine.models import catalog

    models = args.models or [e.name for e in catalog.CATALOG.values() if catalog.local_path(e) is not None]
    print(f"\n(c) generator: {args.gen_n} soft prompts in one batch (batch_size {args.gen_n}) vs one at a time, "
          f"{args.gen_rounds} round(s) alternately, antonyms demos, {os.cpu_count()} CPUs")
    print(f"{'model':<20} {'backend':<20} {'load s':>7} {'batched/s':>10} {'single/s':>9} {'x single':>9} "
          f"{'same':>5} {'distinct':>8}")
    for model in models:
        if catalog.local_path(catalog.get(model)) is None:
            print(f"{model:<20} not pulled (iz models pull {model})")
            continue
        proc = subprocess.run([sys.executable, __file__, "--gen-worker", model, "--gen-n", str(args.gen_n),
                               "--gen-rounds", str(args.gen_rounds)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{model:<20} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:90]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        n = args.gen_n * args.gen_rounds
        b, s = n / r["batched_s"], n / r["single_s"]
        print(f"{model:<20} {r['backend']:<20} {r['load_s']:>7.1f} {b:>10.2f} {s:>9.2f} {b / s:>9.2f} "
              f"{r['same']:>2}/{args.gen_n:<2} {r['distinct']:>8}")


# -- (d) paid calls ---------------------------------------------------------------------------------------
async def part_d(args: argparse.Namespace) -> None:
    from engine.wire.client import EngineClient

    if args.paper:
        budget = dict(PAPER)
        evaluations = budget["n_init"] + budget["n_iterations"] * budget["batch_size"]
    else:
        evaluations = args.budget
        n_init = max(1, evaluations // 2)
        batch = max(1, (evaluations - n_init) // 2)
        budget = {"n_init": n_init, "batch_size": batch, "n_iterations": -(-(evaluations - n_init) // batch),
                  "budget_evaluations": evaluations, "n_dev": 20, "n_test": 20}
    server = LatencyServer(0.0)
    home = make_home({"bench": {"base_url": server.url, "model": "bench-model"}}, generator=args.generator)
    methods = args.methods
    manual = ["Write the larger animal.", "Name the bigger of the two animals.", "Which animal is larger?"]
    rows = []
    try:
        async with EngineClient(env=engine_env(home)) as client:
            for method in methods:
                # racing on (the default) against off (every dev example asked, as in the paper): the same
                # method and seed, so they propose the same instructions until racing changes a score
                for race in ([True, False] if method != "manual" else [True]):
                    settings = {**budget, "method": method, "seed": 0, "race": race}
                    model = f"bench-{method}-{'race' if race else 'all'}"  # a fresh cache for each
                    start: dict[str, Any] = {"settings": settings, "model": model}
                    if method == "manual":
                        start["instructions"] = manual
                    _, _, secs, last = await timed_run(client, "larger_animal", **start)
                    drain(client)
                    rows.append((method, race, secs, last.summary))
    finally:
        server.close()
    from engine.store import open_history

    h = open_history(home / "history.db")
    n_dev, n_test = budget["n_dev"], budget["n_test"]
    label = "paper" if args.paper else "small"
    print(f"\n(d) paid calls per run, {label} budget ({evaluations} evaluations, dev {n_dev}, test {n_test}), "
          f"generator {args.generator}, 0 ms server, a fresh cache per row")
    print(f"{'method':<13} {'race':>4} {'evals':>5} {'cands':>5} {'cut':>4} {'paid':>6} {'saved':>6} {'test':>5} "
          f"{'propose':>7} {'paid/(evals x dev)':>18} {'x race off':>10} {'best dev':>8} {'test':>5} {'s':>6}")
    off = {m: s["calls"] for m, race, _, s in rows if not race}
    for method, race, secs, s in rows:
        cands = h.candidates(s["run_id"], status="scored")
        scored_calls = sum(int(c["calls"] or 0) for c in cands)
        test_calls = sum(sc["n_examples"] for c in cands for sc in h.scores(c["id"]) if sc["kind"] == "test")
        cut = sum(1 for c in cands if c.get("stopped_early"))
        propose = s["calls"] - scored_calls - test_calls
        ev = s["evaluations"] or 0
        r1 = s["calls"] / (ev * n_dev) if ev else float("nan")
        vs = s["calls"] / off[method] if method in off else float("nan")
        test = "-" if s.get("test_score") is None else f"{s['test_score']:.2f}"
        print(f"{method:<13} {'on' if race else 'off':>4} {ev:>5} {len(cands):>5} {cut:>4} {s['calls']:>6} "
              f"{s['calls_saved']:>6} {test_calls:>5} {propose:>7} {r1:>18.2f} {vs:>10.2f} "
              f"{s['dev_score'] or 0:>8.2f} {test:>5} {secs:>6.1f}")
    h.close()
    print("target: paid/(evals x dev) at most 0.7 at the paper budget (racing on: the default)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-stub":
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        sys.exit(engine_stub_main(sys.argv[1:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    ap.add_argument("--latency", type=float, default=0.2, help="the test server's answer time, seconds")
    ap.add_argument("--repeats", type=int, default=3, help="(a) runs per concurrency")
    ap.add_argument("--profile", action="store_true", help="(b) also profile a run (cProfile; ~2 more minutes)")
    ap.add_argument("--top", type=int, default=12, help="(b) profile lines")
    ap.add_argument("--models", nargs="+", help="(c) catalog models (default: every pulled one)")
    ap.add_argument("--gen-n", type=int, default=8, help="(c) soft prompts per round")
    ap.add_argument("--gen-rounds", type=int, default=1, help="(c) rounds, batched and one at a time alternately")
    ap.add_argument("--gen-worker", help=argparse.SUPPRESS)
    ap.add_argument("--methods", nargs="+", default=["instructzero", "random", "ape", "ape_local", "manual"])
    ap.add_argument("--generator", default="smollm2-135m", help="(d) the generator model")
    ap.add_argument("--budget", type=int, default=10, help="(d) evaluations without --paper")
    ap.add_argument("--paper", action="store_true", help="(d) the paper's budget: 150 evaluations, test 100")
    args = ap.parse_args()
    if args.gen_worker:
        gen_worker(args.gen_worker, args.gen_n, args.gen_rounds, args.gen_n)
        return
    t0 = time.perf_counter()
    print(f"engine_speed: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, parts {' '.join(args.parts)}")
    if "a" in args.parts:
        asyncio.run(part_a(args))
    if "b" in args.parts:
        asyncio.run(part_b(args))
    if "c" in args.parts:
        part_c(args)
    if "d" in args.parts:
        asyncio.run(part_d(args))
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
