"""Where InstructZero keeps its files.

XDG locations by default (through platformdirs), overridable so tests and users can sandbox everything:
``IZ_HOME`` moves the data folder (history database, user tasks, logs), ``IZ_CONFIG`` the configuration file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs

APP = "instructzero"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and any missing parent) readable by the user only (0700), whatever the umask.

    Folders that exist already are left as they are: a data folder a person chose and made is theirs to set up.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists and is readable by the user only (0600), whatever the umask; its folder is
    created with :func:`private_dir`. Used for the history database, logs and the configuration file: none holds
    a key, but runs, prompts and answers are nobody else's business."""
    path = Path(path)
    if path.exists():
        with contextlib.suppress(OSError):  # a file someone else owns (a shared copy): leave its mode alone
            os.chmod(path, 0o600)
        return path
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


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


def module_command(python: str, module: str, *args: str) -> list[str]:
    """The command that runs ``python -m module`` from this installation, whatever the caller's cwd holds.

    ``-m`` puts the cwd first on ``sys.path``, so a folder named ``engine`` there (another checkout, a user's own
    project) would be imported instead of this package; ``-P`` (Python 3.11+) leaves the cwd out, and
    :func:`child_env` puts this installation's root first."""
    return [python, "-P", "-m", module, *args]


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this installation's root first on PYTHONPATH, for a child started by :func:`module_command`."""
    root = str(Path(__file__).resolve().parents[1])
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": root + (os.pathsep + rest if rest else "")}
