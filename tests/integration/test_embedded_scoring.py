"""The real thing: llama.cpp's server with the bundled SmolLM2-135M, real HTTP, real SQLite.

Checks that the objective carries signal (a sensible instruction beats a nonsense one under ``contains``, as measured
in DESIGN.md), that the cache makes a repeated scoring free, and that the server never outlives its owner.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from engine.blackbox import BlackBox, EmbeddedServer, Race, score_instruction
from engine.config import EndpointProfile
from engine.store import open_history
from engine.tasks import Example, Task, load_task, make_splits

pytestmark = pytest.mark.integration

GOOD = "Write the larger of the two animals."
BAD = "Reply with the word banana."
REPO = Path(__file__).resolve().parents[2]


def _larger_animal(tmp: Path) -> tuple[Task, list[Example]]:
    """The built-in task (scored by ``contains``: SmolLM2 answers in sentences), or a small inline stand-in."""
    if (REPO / "tasks" / "larger_animal").is_dir():
        task = dataclasses.replace(load_task("larger_animal"), metric="contains")
        examples = make_splits(task, n_demos=5, n_dev=20, n_test=0, seed=0).dev
        return task, examples
    pairs = [("whale", "mouse"), ("ant", "horse"), ("cat", "elephant"), ("cow", "frog"), ("bee", "lion"),
             ("shark", "snail"), ("giraffe", "rabbit"), ("bear", "spider"), ("crab", "camel"), ("zebra", "wasp")]
    examples = [Example(f"{a}, {b}", (big,)) for a, b in pairs for big in [max((a, b), key=_SIZE.get)]]
    task = Task("larger_animal", "larger animal", "contains", None, tuple(examples), tmp, False)
    return task, examples


_SIZE = {"whale": 9, "mouse": 1, "ant": 0, "horse": 6, "cat": 3, "elephant": 8, "cow": 6, "frog": 1, "bee": 0,
         "lion": 5, "shark": 7, "snail": 0, "giraffe": 7, "rabbit": 2, "bear": 6, "spider": 0, "crab": 1,
         "camel": 6, "zebra": 5, "wasp": 0}


async def test_good_instruction_beats_nonsense_and_repeats_are_free(
    embedded_server: EmbeddedServer, iz_home: Path
) -> None:
    task, examples = _larger_animal(iz_home)
    history = open_history(iz_home / "history.db")
    prof = EndpointProfile()  # the embedded default: chat, temperature 0, max_tokens 32
    async with BlackBox(prof, history, base_url=embedded_server.base_url,
                        cache_identity=embedded_server.identity) as bb:
        good = await score_instruction(bb, task, GOOD, examples)
        bad = await score_instruction(bb, task, BAD, examples)
        sent = bb.requests_sent
        assert sent == bb.calls == 2 * len(examples)
        print(f"\n{task.name} (contains, n={len(examples)}): {GOOD!r} {good.mean:.2f}  vs  {BAD!r} {bad.mean:.2f}")
        assert good.mean > bad.mean
        assert good.mean >= 0.4, good.outputs
        assert not any(o["cache_hit"] for o in good.outputs)
        assert all(o["prompt_tokens"] > 0 and o["latency_s"] > 0 for o in good.outputs)

        again = await score_instruction(bb, task, GOOD, examples)
        assert bb.requests_sent == sent, "a repeated scoring must send no HTTP request"
        assert all(o["cache_hit"] for o in again.outputs)
        assert again.per_example == good.per_example
        assert [o["output"] for o in again.outputs] == [o["output"] for o in good.outputs]

    # The cache is keyed by the model file, not the port: a server on another port (here: none at all) still hits.
    async with BlackBox(prof, history, base_url="http://127.0.0.1:9/v1", cache_identity=embedded_server.identity) as bb2:
        third = await score_instruction(bb2, task, BAD, examples)
        assert bb2.requests_sent == 0 and third.mean == bad.mean
    history.close()


async def test_default_embedded_profile_uses_the_shared_server(embedded_server: EmbeddedServer) -> None:
    async with BlackBox(EndpointProfile()) as bb:
        t0 = time.perf_counter()
        c = await bb.complete("Instruction: Write the larger of the two animals.\n\nInput: whale, mouse\n\nOutput:")
        wall = time.perf_counter() - t0
        assert bb.base_url == embedded_server.base_url and bb.identity == embedded_server.identity
    print(f"\none embedded chat completion: {c.latency_s:.3f}s ({wall:.3f}s wall), {c.completion_tokens} tokens: "
          f"{c.text!r}")
    assert c.text.strip() and not c.cache_hit


def _gone(pid: int, within_s: float) -> bool:
    """True when ``pid`` has exited (a zombie waiting for init to reap it counts as gone)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("from_thread", [False, True], ids=["main-thread", "short-lived-thread"])
def test_sigkill_of_the_owner_takes_the_server_down(tmp_path: Path, from_thread: bool) -> None:
    """SIGKILL gives the engine no chance to clean up: the kernel's parent-death signal must end the server.

    Started from a short-lived thread too (as ``asyncio.to_thread`` may do): PR_SET_PDEATHSIG fires when the
    *thread* that forked dies, so the server must survive that thread's end and still die with the process.
    """
    code = textwrap.dedent(f"""
        import threading, time
        from pathlib import Path
        from engine.models.embedded import EmbeddedServer
        s = EmbeddedServer(log_path=Path({str(tmp_path / "server.log")!r}))
        if {from_thread!r}:
            t = threading.Thread(target=s.start)
            t.start()
            t.join()
            time.sleep(1.0)  # the starting thread is gone; the server must still be up
            assert s.running, "the server died with the thread that started it"
        else:
            s.start()
        print(s.pid, flush=True)
        time.sleep(300)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    server_pid = None
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip().isdigit(), f"child failed: {line!r} {child.stderr.read() if child.stderr else ''}"
        server_pid = int(line)
        assert psutil.pid_exists(server_pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert _gone(server_pid, within_s=10), "the llama.cpp server outlived its SIGKILLed owner"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if server_pid and not _gone(server_pid, 0.1):
            os.kill(server_pid, signal.SIGKILL)


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    with EmbeddedServer(log_path=tmp_path / "server.log") as server:
        pid = server.pid
        assert pid and server.running and server.base_url
        assert server.start() == server.base_url  # idempotent: the same server
        assert server.pid == pid
    assert not server.running and server.base_url is None
    assert _gone(pid, within_s=1)
    server.stop()  # twice is fine


async def test_racing_stops_a_hopeless_instruction_on_the_real_server(
    embedded_server: EmbeddedServer, iz_home: Path
) -> None:
    """Raced against the good instruction's score, the nonsense one is dropped at the first wave after which it
    can no longer tie: fewer requests go out, its kept mean is below the bar, and every answer it did get is the
    one a full scoring gets (same prompts, same order)."""
    task, examples = _larger_animal(iz_home)
    prof = EndpointProfile()
    async with BlackBox(prof, None, base_url=embedded_server.base_url) as bb:
        good = await score_instruction(bb, task, GOOD, examples)
        full = await score_instruction(bb, task, BAD, examples)
        before = bb.requests_sent
        raced = await score_instruction(bb, task, BAD, examples, race=Race(bar=good.mean, wave=5))
        sent = bb.requests_sent - before
    n = len(examples)
    print(f"\nraced {BAD!r} against {good.mean:.2f}: {len(raced.per_example)} of {n} asked, mean {raced.mean:.2f}")
    assert good.mean > full.mean
    assert raced.stopped_early and sent == len(raced.per_example) < n and sent % 5 == 0
    assert (sum(raced.per_example) + n - sent) / n < good.mean  # it could no longer tie...
    prev = sent - 5
    assert (sum(raced.per_example[:prev]) + n - prev) / n >= good.mean  # ...and could one wave earlier
    assert raced.per_example == full.per_example[:sent]
    assert [o["output"] for o in raced.outputs] == [o["output"] for o in full.outputs[:sent]]
