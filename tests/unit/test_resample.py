"""The second-try rule for soft prompts that decode to a known instruction (engine/resample.py), and the runner's
use of it with a scripted generator: repeats are decoded again by sampling, new texts become evaluations, a
z that never finds one stays a free repeat, and ``resample_repeats = 0`` is the paper's greedy-only decoding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.config import RunSettings
from engine.resample import replace_repeats
from engine.wire.events import CandidateScored, Event, Status
from tests.unit.unit_fakes import FakeEndpoint, FakeGenerator, engine_with_fakes

pytestmark = pytest.mark.usefixtures("no_real_generator")

SMALL = {"intrinsic_dim": 2, "n_soft_tokens": 1, "n_dev": 2, "n_test": 0, "n_demos": 2}


def test_only_repeats_are_retried_and_the_first_new_text_wins() -> None:
    asked: list[tuple[list[int], int]] = []
    answers = {0: ["B", "C"], 1: ["D"]}

    def retry(rows: list[int], attempt: int) -> list[str]:
        asked.append((list(rows), attempt))
        return answers[attempt]

    # "A" is known to the run; the second "B" repeats the batch's first. Try 0 finds B (taken) and C; try 1 finds D.
    out, n = replace_repeats(["A", "B", "B"], ["A"], retry, tries=2)
    assert n == 2
    assert asked == [([0, 2], 0), ([0], 1)]
    assert out == ["D", "B", "C"]


def test_a_repeat_that_finds_nothing_keeps_its_greedy_text_and_no_tries_means_no_calls() -> None:
    out, n = replace_repeats(["A", "A"], [], lambda rows, attempt: ["A"] * len(rows), tries=3)
    assert (out, n) == (["A", "A"], 1)

    def never(rows: list[int], attempt: int) -> list[str]:
        raise AssertionError("no tries, no decoding")

    assert replace_repeats(["A", "A"], ["A"], never, tries=0) == (["A", "A"], 2)
    assert replace_repeats(["A", "B"], [], never, tries=2) == (["A", "B"], 0)


def test_a_retry_must_answer_every_row() -> None:
    with pytest.raises(ValueError, match="1 texts for 2"):
        replace_repeats(["A", "A", "A"], [], lambda rows, attempt: ["X"], tries=1)


def _run(engine: Any, settings: RunSettings, events: list[Event]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await engine.run("larger_animal", settings.model_dump(), emit=events.append)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def test_the_runner_scores_what_sampling_found_instead_of_stopping(fake: FakeEndpoint, tmp_path: Path) -> None:
    """Greedy decoding writes one sentence for every z; the sampled second tries supply new ones, so the run
    spends its evaluations where greedy-only decoding stops with ``no_new_instructions``."""
    settings = RunSettings(**SMALL, n_init=3, batch_size=3, budget_evaluations=4, seed=2,
                           resample_repeats=2, resample_temperature=0.9)
    gen = FakeGenerator(["Name the bigger one."], resamples=["Pick the heavier.", "Say which is larger.",
                                                            "Write the larger animal."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    events: list[Event] = []
    summary = _run(engine, settings, events)
    scored = [e for e in events if isinstance(e, CandidateScored)]
    texts = [e.instruction for e in scored]
    assert texts[:3] == ["Name the bigger one.", "Pick the heavier.", "Say which is larger."]
    assert summary["evaluations"] == 4 and summary["stop_reason"] == "evaluations"
    # first batch: 2 repeats re-decoded in one call at the run's temperature; seeds differ per iteration and try
    assert gen.sampled[0][:2] == (2, 0.9)
    assert len({seed for _, _, seed in gen.sampled}) == len(gen.sampled)
    assert any(isinstance(e, Status) and "sampling them again found 2 new" in e.message for e in events)
    stored = engine.history.candidates(summary["run_id"])
    assert [c["decoding"] for c in stored[:3]] == ["greedy", "sampled", "sampled"]

    greedy_only = FakeGenerator(["Name the bigger one."], resamples=["Pick the heavier."])
    engine = engine_with_fakes(fake, tmp_path / "greedy", greedy_only)
    events = []
    summary = _run(engine, settings.model_copy(update={"resample_repeats": 0}), events)
    assert greedy_only.sampled == []
    assert summary["evaluations"] == 1 and summary["stop_reason"] == "no_new_instructions"


def test_a_rejected_text_is_retried_like_a_repeat_and_a_retry_is_rejected_too() -> None:
    asked: list[list[int]] = []
    tries = {0: ["echo two", "C"], 1: ["D"]}

    def retry(rows: list[int], attempt: int) -> list[str]:
        asked.append(list(rows))
        return tries[attempt]

    # "echo" is rejected although new; try 0 gives another rejected text for it and C for the repeat; try 1 finds D.
    out, n = replace_repeats(["echo", "B", "B"], [], retry, tries=2, reject=lambda t: t.startswith("echo"))
    assert (out, n) == (["D", "B", "C"], 2)
    assert asked == [[0, 2], [0]]
    # Without a rule the same texts are all kept but the repeat.
    assert replace_repeats(["echo", "B"], [], retry, tries=0) == (["echo", "B"], 0)


def test_with_resample_echoes_the_runner_decodes_an_echo_again(fake: FakeEndpoint, tmp_path: Path) -> None:
    """An instruction that only restates the generator's prompt is decoded again by sampling, and the sampled text
    is what the run scores; with the setting off (the default) the echo is scored like any new text."""
    echo = "Write an output for every one of the inputs based on the given instruction."
    settings = RunSettings(**SMALL, n_init=2, batch_size=2, budget_evaluations=2, seed=1, resample_repeats=2)
    assert settings.resample_echoes is False
    gen = FakeGenerator([echo, "Name the bigger one."], resamples=["Write an output for each input.",
                                                                   "Pick the larger animal."])
    engine = engine_with_fakes(fake, tmp_path, gen)
    events: list[Event] = []
    summary = _run(engine, settings.model_copy(update={"resample_echoes": True}), events)
    stored = engine.history.candidates(summary["run_id"])
    assert [(c["instruction"], c["decoding"]) for c in stored] == [
        ("Pick the larger animal.", "sampled"), ("Name the bigger one.", "greedy")]
    assert fake.asking(echo) == 0 and fake.asking("Write an output for each input.") == 0
    assert any(isinstance(e, Status) and "echo of the prompt" in e.message for e in events)

    kept = FakeGenerator([echo, "Name the bigger one."], resamples=["Pick the larger animal."])
    engine = engine_with_fakes(fake, tmp_path / "off", kept)
    summary = _run(engine, settings, [])
    assert [c["instruction"] for c in engine.history.candidates(summary["run_id"])] == [echo, "Name the bigger one."]
    assert kept.sampled == [] and fake.asking(echo) > 0
