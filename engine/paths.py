"""Where InstructZero keeps its files.

XDG locations by default (through platformdirs), overridable so tests and users can sandbox everything:
``IZ_HOME`` moves the data folder (history database, user tasks, logs), ``IZ_CONFIG`` the configuration file.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "instructzero"


def home() -> Path:
    """The data folder: ``$IZ_HOME`` or the XDG data dir."""
    env = os.environ.get("IZ_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP))


def config_file() -> Path:
    """The configuration file: ``$IZ_CONFIG`` or ``config.toml`` in the XDG config dir."""
    env = os.environ.get("IZ_CONFIG")
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir(APP)) / "config.toml"


def history_db() -> Path:
    return home() / "history.db"


def user_tasks_dir() -> Path:
    return home() / "tasks"


def builtin_tasks_dir() -> Path:
    """The tasks shipped with the project (the repository's ``tasks/`` folder)."""
    return Path(__file__).resolve().parent.parent / "tasks"


def cache_dir() -> Path:
    """Derived data that can be rebuilt at any time (dequantised embedding matrices, converted tokenizers):
    ``$IZ_CACHE``, else ``cache/`` in the data folder. Its own override so that throwaway homes (tests,
    benchmarks) can share the one cache instead of rebuilding a GB per model each time."""
    env = os.environ.get("IZ_CACHE")
    return Path(env).expanduser() if env else home() / "cache"


def logs_dir() -> Path:
    return home() / "logs"


def models_dir() -> Path:
    """Where `iz models pull` puts model files: ``$IZ_MODELS``, else ``models/`` in the data folder.

    A separate override because model files are large (up to a few GB) and often belong on another disk than
    the history database.
    """
    env = os.environ.get("IZ_MODELS")
    return Path(env).expanduser() if env else home() / "models"
