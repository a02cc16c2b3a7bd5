"""Users' own metrics and prompt settings against the real llama.cpp server with the bundled SmolLM2-135M.

Why: the unit tests check the wiring on a loopback fake; here the answers, token counts and cache rows are real.
The judge test asserts what the judge mechanism must guarantee (its calls are made, cached on a repeat, counted,
and give scores in 0..1), not how good a 135M model is as a judge. The engine test checks that a task's own
python/regex/json metric scores the model's real answers, and that the task's api, system prompt and max_tokens
reach the server.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine import paths
from engine.blackbox import BlackBox, EmbeddedServer, score_instruction
from engine.config import Config, EndpointProfile
from engine.runner import Engine
from engine.store import open_history
from engine.tasks import load_task

pytestmark = pytest.mark.integration

PAIRS = [("whale, mouse", "whale"), ("ant, horse", "horse"), ("cat, elephant", "elephant")]


def write_task(name: str, toml: str, files: dict[str, str] | None = None, *, json_answers: bool = False) -> Path:
    folder = paths.user_tasks_dir() / name
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text(f'name = "{name}"\ndescription = "test"\n' + textwrap.dedent(toml))
    rows = [{"input": i, "output": {"larger": o} if json_answers else o} for i, o in PAIRS]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for fname, body in (files or {}).items():
        (folder / fname).write_text(textwrap.dedent(body))
    return folder


async def test_smollm2_as_judge_is_called_cached_and_scores_in_range(
        embedded_server: EmbeddedServer, iz_home: Path) -> None:
    write_task("judged", """\
        metric = "judge"

        [judge]
        rubric = "The answer names the larger of the two animals."
        endpoint = "embedded"
    """)
    task = load_task("judged")
    examples = list(task.examples)
    history = open_history(iz_home / "history.db")

    def client() -> BlackBox:
        return BlackBox(EndpointProfile(), history, base_url=embedded_server.base_url,
                        cache_identity=embedded_server.identity)

    async with client() as bb, client() as judge:
        first = await score_instruction(bb, task, "Write the larger of the two animals.", examples, judge=judge)
        answered = sum(bool(o["output"].strip()) for o in first.outputs)
        assert answered > 0, first.outputs
        assert judge.calls == judge.requests_sent == answered, "one judge call per non-empty answer"
        assert all(0.0 <= s <= 1.0 for s in first.per_example) and 0.0 <= first.mean <= 1.0
        for o in first.outputs:
            if o["judge"] is not None:
                assert o["judge"]["prompt_tokens"] > 0 and not o["judge"]["cache_hit"]
        assert first.usage.calls == bb.calls + judge.calls
        print(f"\nSmolLM2 as judge: {[o['judge'] and o['judge']['output'] for o in first.outputs]} -> "
              f"{first.per_example}")

    async with client() as bb, client() as judge:
        again = await score_instruction(bb, task, "Write the larger of the two animals.", examples, judge=judge)
        assert bb.requests_sent == 0 and judge.requests_sent == 0, "a repeat is answered by the cache"
        assert judge.cache_hits == answered
        assert again.per_example == first.per_example
        assert again.usage.calls == 0 and again.usage.calls_saved == first.usage.calls
    history.close()


METRIC_PY = """\
    def score(output, answers):
        return float(any(a.lower() in output.lower() for a in answers))
"""


def test_own_metrics_and_prompt_settings_through_the_engine(embedded_server: EmbeddedServer, iz_home: Path) -> None:
    settings = """\
        system = "Answer with one word. {instruction}"
        template = "{input}"
        max_tokens = 8
        stop = ["\\n"]
    """
    write_task("own_py", 'metric = "python"\npython = "metric.py:score"\n' + textwrap.dedent(settings),
               {"metric.py": METRIC_PY})
    write_task("own_rx", 'metric = "regex"\napi = "completions"\n' + textwrap.dedent(settings))
    write_task("own_js", 'metric = "json"\nmax_tokens = 12\n', json_answers=True)
    engine = Engine(Config(default_endpoint="embedded",
                           endpoints={"embedded": EndpointProfile(model="smollm2-135m-instruct")}),
                    open_history(iz_home / "history.db"))
    run = {"method": "manual", "n_demos": 0, "n_dev": 3, "n_test": 0}

    async def go() -> list[dict[str, Any]]:
        try:
            return [await engine.run(name, run, instructions=["Write the larger of the two animals."])
                    for name in ("own_py", "own_rx", "own_js")]
        finally:  # close the clients, not the session's shared server (Engine.aclose would stop it)
            for bb in engine._blackboxes.values():
                await bb.aclose()

    summaries = asyncio.run(go())
    assert [s["status"] for s in summaries] == ["finished"] * 3, summaries
    for s, name in zip(summaries, ("own_py", "own_rx", "own_js"), strict=True):
        task = load_task(name)
        cand = engine.history.candidates(s["run_id"])[0]
        outs = engine.history.outputs(cand["id"], "dev")
        assert len(outs) == 3 and 0.0 <= s["dev_score"] <= 1.0
        # The stored score of each real answer is the task's own metric applied to it.
        assert [o["score"] for o in outs] == [task.score(o["output"], o["answers"]) for o in outs]
        limit = 12 if name == "own_js" else 8
        assert all(o["completion_tokens"] <= limit for o in outs), outs
        print(f"\n{name}: {[o['output'] for o in outs]} -> {[o['score'] for o in outs]}")
    apis = {bb.profile.api: bb.calls for bb in engine._blackboxes.values()}
    assert apis.get("completions", 0) == 3, "the regex task asked for completions and got them"
    assert apis.get("chat", 0) == 6
    engine.history.close()
