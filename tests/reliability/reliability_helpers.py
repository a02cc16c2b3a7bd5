"""Helpers for the reliability tests: the real `iz` CLI in a subprocess, in a sandbox of its own.

Every call gets its own data folder (IZ_HOME) and configuration file (IZ_CONFIG) under the test's tmp_path, a
plain 80-column terminal and no colour, so what the tests read is what a person would read in a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_IZ_SCRIPT = Path(sys.executable).parent / "iz"
#: The installed `iz` command (the console script), or the same entry point through the interpreter.
IZ: list[str] = [str(_IZ_SCRIPT)] if _IZ_SCRIPT.is_file() else [sys.executable, "-m", "iz_tui"]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Sandbox:
    """A data folder, a configuration path and the environment `iz` runs with."""

    root: Path
    home: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IZ_")}
        env.update(IZ_HOME=str(self.home), IZ_CONFIG=str(self.config), NO_COLOR="1", TERM="dumb",
                   COLUMNS="100", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        if os.environ.get("IZ_CACHE"):
            env["IZ_CACHE"] = os.environ["IZ_CACHE"]
        env.update(self.env)
        env.update(extra or {})
        return env

    def iz(self, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = (),
           timeout: float = 120, umask: int | None = None) -> Result:
        """Run `iz ARGS` to its end and return its exit code and output."""
        proc = subprocess.run(
            [*prefix, *IZ, *args], capture_output=True, text=True, env=self.environ(env), cwd=self.root,
            timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=_umask(umask),
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None, umask: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*IZ, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.environ(env),
            cwd=self.root, stdin=subprocess.DEVNULL, preexec_fn=_umask(umask),
        )

    def write_config(self, text: str) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text, encoding="utf-8")


def _umask(mask: int | None) -> Callable[[], None] | None:
    if mask is None:
        return None

    def set_mask() -> None:
        os.umask(mask)

    return set_mask


def make_sandbox(root: Path) -> Sandbox:
    root.mkdir(parents=True, exist_ok=True)
    return Sandbox(root=root, home=root / "home", config=root / "config.toml")


def fake_profile(url: str, name: str = "fake", **extra: Any) -> str:
    """A configuration whose default endpoint is the loopback fake (no retries: a failure is final at once)."""
    lines = [f'default_endpoint = "{name}"', "", f"[endpoints.{name}]", f'base_url = "{url}"', 'model = "fake-model"',
             "max_retries = 0"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    return "\n".join(lines) + "\n"


# -- what is on disk -------------------------------------------------------------------------------------------
def db_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (FTS shadow tables and the migrations record included), sorted."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table' order by name")]
        return {t: sorted(conn.execute(f"select * from [{t}]").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DB_FILES = ("history.db", "history.db-wal", "history.db-shm")


def disk_state(root: Path, db: Path | None, *, db_bytes: bool = False) -> dict[str, Any]:
    """What a command could have written under ``root``: every folder and file (by content), the history's rows.

    The engine's logs are left out (a run that fails still logs why); so are the history's files, compared by
    rows (SQLite rewrites pages of an unchanged database on a checkpoint) unless ``db_bytes``: then the
    database file itself must be byte for byte the same (a damaged or newer file must never be touched)."""
    files: dict[str, str] = {}
    dirs: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if "logs" in rel.parts:
            continue
        dirs.append(str(rel))
        for name in filenames:
            p = Path(dirpath) / name
            if db is not None and p.parent == db.parent and name in DB_FILES:
                continue
            if p.is_file():
                files[str(rel / name)] = sha256(p)
    state: dict[str, Any] = {"dirs": sorted(d for d in dirs), "files": files}
    if db is not None and db.is_file():
        state["db"] = sha256(db) if db_bytes else db_rows(db)
    return state


# -- processes -------------------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    return ""


def watch_argv(proc: subprocess.Popen[str], until: Callable[[], bool] | None = None,
               timeout: float = 120) -> Iterator[list[str]]:
    """Yield the argument lists of ``proc``'s descendants every few milliseconds while it runs."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        yield [cmdline(pid) for pid in descendants(proc.pid)]
        if until is not None and until():
            return
        time.sleep(0.05)


# -- privileges and file systems -------------------------------------------------------------------------------
def read_only_prefix() -> list[str] | None:
    """A command prefix under which a folder with mode 0500 really cannot be written: nothing for a normal user;
    for root (who ignores permissions), `setpriv` dropping the capabilities that override them. None when root
    has no `setpriv`."""
    if os.geteuid() != 0:
        return []
    tool = shutil.which("setpriv")
    if tool is None:
        return None
    return [tool, "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


_TMPFS_OK: dict[str, bool] = {}


def tmpfs_available(probe_dir: Path) -> bool:
    """Whether `unshare -rm` can mount a tiny private tmpfs here (root, or unprivileged user namespaces)."""
    if "ok" not in _TMPFS_OK:
        tool = shutil.which("unshare")
        ok = False
        if tool is not None:
            probe_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ok = subprocess.run([tool, "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"',
                                     str(probe_dir)], capture_output=True, timeout=20).returncode == 0
        _TMPFS_OK["ok"] = ok
    return _TMPFS_OK["ok"]


def on_tiny_tmpfs(mountpoint: Path, size: str, listing: Path, before: str = "") -> list[str]:
    """A command prefix that runs the command with ``mountpoint`` on a private tmpfs of ``size`` (a "full disk"
    that vanishes with the command), after the shell commands ``before`` (which may fill it up: a file named
    ``filler`` is left out of what is compared). What is on the tmpfs (paths, sizes, the history's SHA-256;
    SQLite's transient -wal/-shm files aside) is written to ``listing.before`` just before the command and to
    ``listing`` after it, since it cannot be looked at from outside."""
    state = ('(cd "$mp" && find . -mindepth 1 ! -name filler ! -name "*-wal" ! -name "*-shm" ! -path "./logs*" '
             '-printf "%y %p %s\\n" | sort; [ -f history.db ] && sha256sum history.db)')
    script = (
        'mp="$1"; out="$2"; shift 2; mount -t tmpfs -o size=' + size + ' tmpfs "$mp" || exit 97; '
        + (before + "; " if before else "")
        + state + ' > "$out.before"; "$@"; rc=$?; ' + state + ' > "$out"; exit $rc'
    )
    return [shutil.which("unshare") or "unshare", "-rm", "sh", "-c", script, "sh", str(mountpoint), str(listing)]
