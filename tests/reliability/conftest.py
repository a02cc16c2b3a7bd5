"""Shared set-up of the reliability tests (kills, endpoint faults, a dying engine under the TUI).

The stand-ins themselves (the deterministic, counting, fault-injecting endpoint; store and /proc checks) live in
``reliability_fakes.py`` beside this file, importable by name from every test module here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from reliability_fakes import ...`, package or not

from reliability_fakes import FakeOpenAI  # noqa: E402


@pytest.fixture
def fake_openai() -> Iterator[Callable[..., FakeOpenAI]]:
    """``fake_openai(fault_rate=..., faults=..., seed=...)`` → a started :class:`FakeOpenAI`, closed after the
    test."""
    made: list[FakeOpenAI] = []

    def make(**kw: Any) -> FakeOpenAI:
        made.append(FakeOpenAI(**kw))
        return made[-1]

    yield make
    for f in made:
        f.close()


# -- the bad-input, secrets and concurrency tests: the real `iz` CLI in a sandbox, the unit tests' fake endpoint --
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # `from unit_fakes import ...`

from reliability_helpers import Sandbox, make_sandbox  # noqa: E402
from unit_fakes import FakeEndpoint  # noqa: E402


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A data folder and a configuration path of this test's own, for `iz` subprocesses."""
    return make_sandbox(tmp_path / "sb")


@pytest.fixture
def fake_endpoint() -> Iterator[FakeEndpoint]:
    """A loopback OpenAI-compatible endpoint (tests/unit/unit_fakes.py) recording every request, headers too."""
    f = FakeEndpoint()
    yield f
    f.close()
