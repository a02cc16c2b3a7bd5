"""Fixtures shared by the fast unit tests of the core (see unit_fakes.py for the stand-ins themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from unit_fakes import FakeEndpoint


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
