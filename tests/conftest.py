"""Shared test set-up: every test gets its own IZ_HOME and IZ_CONFIG, so nothing touches the user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _sandbox_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("iz_home")
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.setenv("IZ_CONFIG", str(home / "config.toml"))
    for var in list(os.environ):
        if var.startswith("IZ_") and var not in ("IZ_HOME", "IZ_CONFIG"):
            monkeypatch.delenv(var)
    return home
