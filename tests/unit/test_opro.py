"""OPRO (engine/methods/opro.py): the meta-prompt shows the scored instructions worst first with integer scores,
the proposer's answer is read from its <INS> tags, and a run pays for its proposals, against a fake
OpenAI-compatible endpoint (requests checked on the wire)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from unit_fakes import FakeEndpoint  # noqa: F401

from engine.config import Config, EndpointProfile, RunSettings
from engine.methods.opro import HISTORY, meta_prompt, parse
from engine.runner import Engine
from engine.store import open_history
from engine.wire.events import Status

DEMOS = [("cat, elephant", "elephant"), ("ant, horse", "horse")]


def test_meta_prompt_lists_the_best_so_far_worst_first_with_integer_scores() -> None:
    history = [(f"Instruction {i}.", i / 30) for i in range(30)]
    text = meta_prompt(history, DEMOS)
    shown = [line for line in text.splitlines() if line.startswith("Instruction ")]
    assert len(shown) == HISTORY == 20
    assert shown[0] == "Instruction 10." and shown[-1] == "Instruction 29."  # the 20 best, ascending
    assert "score:\n97" in text and "score:\n33" in text and "score:\n30" not in text
    assert "Input:\n<INS>\ncat, elephant\nOutput:\nelephant" in text
    assert text.rstrip().endswith("end it with </INS>.")
    assert text.index("Instruction 29.") < text.index("Input:\n<INS>")  # history, then examples, then the ask


def test_without_history_it_asks_for_a_first_instruction() -> None:
    text = meta_prompt([], DEMOS)
    assert "score" not in text and "differs from every instruction" not in text
    assert "<INS>" in text and "cat, elephant" in text


def test_parse_takes_the_tagged_instruction() -> None:
    assert parse("Sure!\n<INS>Write the larger animal.</INS> Hope it helps") == "Write the larger animal."
    assert parse("<ins> **Write the larger animal.** ") == "Write the larger animal."  # no closing tag (stop)
    assert parse("Write the larger animal.") == "Write the larger animal."  # no tags at all
    assert parse("<INS><INS>x</INS>") == ""  # a tag left inside: not an instruction
    assert parse("<INS>" + "word " * 200 + "</INS>") == ""  # far too long
    assert parse("") == ""


def _engine(fake: FakeEndpoint, tmp_path: Path) -> Engine:
    config = Config(default_endpoint="fake", endpoints={
        "embedded": EndpointProfile(model="smollm2-135m-instruct"),
        "fake": EndpointProfile(base_url=fake.url, model="fake-model", max_retries=0)})
    return Engine(config, open_history(tmp_path / "history.db"))


TINY = {"method": "opro", "n_init": 2, "batch_size": 2, "budget_evaluations": 6, "n_dev": 2, "n_test": 2,
        "n_demos": 3, "race": False}


def test_an_opro_run_shows_the_proposer_its_scores_and_pays_for_the_proposals(fake: FakeEndpoint,
                                                                                 tmp_path: Path) -> None:
    # Each proposal is a new instruction; the scoring answer is right only for instructions naming "larger".
    fake.propose = lambda body: f"<INS>Write the larger animal, take {body['seed'] % 1000}.</INS>"
    fake.answer_for = lambda prompt: "elephant" if "take" in prompt else "mouse"
    engine = _engine(fake, tmp_path)
    events: list[Any] = []

    async def go(e: Engine) -> dict[str, Any]:
        try:
            return await e.run("larger_animal", RunSettings(**TINY), emit=events.append)
        finally:
            await e.aclose()

    summary = asyncio.run(go(engine))
    assert summary["status"] == "finished" and summary["evaluations"] == 6
    proposals = fake.proposals()
    assert len(proposals) == 6 and {p["temperature"] for p in proposals} == {1.0}
    assert len({p["seed"] for p in proposals}) == 6
    prompts = [json.dumps(p["messages"]) for p in proposals]
    assert all("score" not in p for p in prompts[:2])  # the first batch has no history
    cands = engine.history.candidates(summary["run_id"])
    assert cands[0]["instruction"] in prompts[2] and cands[1]["instruction"] in prompts[2]
    assert all(c["instruction"] in prompts[4] for c in cands[:4])  # every scored one so far, with its score
    assert "score:\\n" in prompts[4]
    assert summary["calls"] == len(fake.requests) > len(proposals)  # proposals are paid calls of the run
    assert any("(OPRO)" in e.message for e in events if isinstance(e, Status))

    before = len(fake.requests)
    second = asyncio.run(go(_engine(fake, tmp_path)))  # the same run again: all from the cache
    assert len(fake.requests) == before and second["calls"] == 0
    assert second["best_instruction"] == summary["best_instruction"]
