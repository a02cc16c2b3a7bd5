"""Shared test set-up: every test gets its own IZ_HOME and IZ_CONFIG, so nothing touches the user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generator cache for the whole session: it is derived from the model file alone, and rebuilding it
    (dequantised embeddings, a converted tokenizer) in every test's home would cost seconds per engine start."""
    return tmp_path_factory.mktemp("iz_cache")


@pytest.fixture(autouse=True)
def _sandbox_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                  _session_cache: Path) -> Path:
    home = tmp_path_factory.mktemp("iz_home")
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    for var in list(os.environ):
        if var.startswith("IZ_") and var not in ("IZ_HOME", "IZ_CONFIG"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("IZ_CACHE", str(_session_cache))
    return home
