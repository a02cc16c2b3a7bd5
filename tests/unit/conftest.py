"""Fixtures shared by the fast unit tests of the core (see unit_fakes.py for the stand-ins themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from unit_fakes import FakeEndpoint

from engine.tasks import load_task


@pytest.fixture()
def fake() -> Iterator[FakeEndpoint]:
    """A loopback OpenAI-compatible endpoint that records every request."""
    f = FakeEndpoint()
    yield f
    f.close()


@pytest.fixture()
def no_real_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that reached the real generator would load a model: fail at once instead."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the test tried to load the real generator")

    monkeypatch.setattr("engine.generator_setup.make_run_generator", refuse)


def _answers() -> dict[str, str]:
    task = load_task("larger_animal")
    return {ex.input: ex.answers[0] for ex in task.examples}


@pytest.fixture()
def graded(fake: FakeEndpoint) -> FakeEndpoint:
    """The fake endpoint answering larger_animal by instruction: right under one that starts with "Good", a near
    miss ("the cheetah is larger") under "Close", right on about half the examples under "Half" (those whose first
    animal sorts before the second), wrong otherwise."""
    truth = _answers()

    def answer(prompt: str) -> str:
        instruction = prompt.split("Instruction: ", 1)[1].split("\n", 1)[0]
        given = prompt.rsplit("Input: ", 1)[1].split("\n", 1)[0]
        if instruction.startswith("Good"):
            return truth[given]
        if instruction.startswith("Close"):  # near misses: a sentence around the right animal
            return f"the {truth[given]} is larger"
        if instruction.startswith("Half"):
            a, b = (x.strip() for x in given.split(","))
            return truth[given] if a < b else "no idea"
        return "no idea"

    fake.answer_for = answer
    return fake
