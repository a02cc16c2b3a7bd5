"""Where sweep workers live: local processes, or Ray actors (a local Ray started for the sweep, or a cluster).

Both give the driver the same thing, a *slot*: ``run(payload)`` yields a worker's messages for one cell and raises
:class:`WorkerDied` if the worker goes away mid-cell; ``restart()`` replaces it. Ray is imported only here and only
for ``--ray``, so it stays an optional extra (``instructzero[ray]``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from engine import paths
from engine.errors import ConfigError
from engine.models.embedded import spawn_tied
from engine.store.history import History, _decoded

log = logging.getLogger(__name__)

#: Environment a worker needs to find the same files as the driver (never a key: keys stay in the environment of
#: the machine that uses them, and a profile names the variable).
_ENV_PREFIXES = ("IZ_", "XDG_", "HF_", "TRANSFORMERS_", "LLAMA_")


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k.startswith(_ENV_PREFIXES) and not any(s in k for s in ("KEY", "TOKEN", "SECRET"))}


class WorkerDied(Exception):
    """The worker process (or actor) ended in the middle of a cell."""


class Slot(Protocol):
    name: str

    def run(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


# -- local processes ----------------------------------------------------------------------------------------
class ProcessSlot:
    """A worker in a local process (a fresh interpreter, nothing inherited from the driver's threads).

    ``history`` is a connection of the slot's own thread to the user's history: it answers the worker's cache
    look-ups (reads only)."""

    def __init__(self, index: int, config: dict[str, Any], history: History) -> None:
        self.index = index
        self.config = config
        self.history = history
        self.name = f"process {index}"
        self._start()

    def _start(self) -> None:
        # A fresh interpreter running `python -m engine.sweep.worker FD`, talking over a socket pair: unlike
        # multiprocessing's spawn it never re-imports the driver's main module (a user's script, the `iz`
        # entry point), and the kernel ends it if the driver dies (spawn_tied).
        ours, theirs = socket.socketpair()
        self.proc = spawn_tied(paths.module_command(sys.executable, "engine.sweep.worker", str(theirs.fileno())),
                               pass_fds=[theirs.fileno()], env=paths.child_env({**os.environ, **worker_env()}),
                               start_new_session=True)  # Ctrl-C reaches the driver, which stops them
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send(self.config)

    def run(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            self.conn.send(payload)
            while True:
                msg = self.conn.recv()
                if msg["type"] == "cache_get":  # the driver answers cache look-ups from the user's history
                    self.conn.send({"row": self.history.cache_get(msg["key"])})
                    continue
                yield msg
                if msg["type"] in ("done", "failed"):
                    return
        except (EOFError, OSError) as exc:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise WorkerDied(f"worker process {self.proc.pid} ended (exit code {code})") from exc

    def restart(self) -> None:
        self._stop(kill=True)
        self._start()

    def _stop(self, *, kill: bool) -> None:
        try:
            if not kill:
                self.conn.send(None)
        except OSError:
            pass
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.conn.close()

    def close(self) -> None:
        self._stop(kill=False)
        self.history.close()

    def kill(self) -> None:
        self._stop(kill=True)
        self.history.close()


# -- Ray ----------------------------------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed",
                          "pip install 'instructzero[ray]' (or run the sweep without --ray: local worker "
                          "processes)") from None
    return ray


def start_ray(address: str | None, workers: int) -> dict[str, Any]:
    """Connect to a Ray cluster, or start a local Ray for this sweep.

    ``address``: None starts a local Ray (stopped with the sweep); ``"auto"`` joins the cluster this machine is
    part of (``ray start`` was run here, or RAY_ADDRESS is set) and starts a local one if there is none;
    anything else (``HOST:PORT``, ``ray://HOST:10001``) must be reachable. Returns what the driver shows."""
    ray = _ray()
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}

    def local() -> dict[str, Any]:
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), runtime_env={"env_vars": worker_env()}, **kwargs)
        return {"address": "local Ray", "cpus": ray.cluster_resources().get("CPU", 0), "local": True}

    if address is None:
        return local()
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        if address == "auto":
            return local()
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}",
                          "start it with `ray start --head` (and each worker machine with `ray start --address "
                          "HEAD:6379`), then pass --ray HEAD:6379; or drop --ray to use local processes") from None
    return {"address": address, "cpus": ray.cluster_resources().get("CPU", 0), "local": False}


def stop_ray() -> None:
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


class _CacheReader:
    """The body of the cache actor: answers look-ups from the user's history file (read-only; it runs on the
    driver's node) and from the answers workers paid for during the sweep that the driver may not have
    written yet."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fresh: dict[str, dict[str, Any]] = {}
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.fresh:
            return self.fresh[key]
        row = self._db().execute("select * from cache where key = ?", [key]).fetchone()
        return _decoded(dict(row), "params") if row else None

    def put(self, row: dict[str, Any]) -> None:
        self.fresh[row["key"]] = row


class _CellActorBody:
    """The body of a Ray worker actor: a :class:`engine.sweep.worker.CellWorker` whose remote cache is the
    sweep's cache actor."""

    def __init__(self, config: dict[str, Any], cache: Any, env: dict[str, str]) -> None:
        os.environ.update(env)
        from engine.sweep.worker import CellWorker

        self.worker = CellWorker(config, _ActorCache(cache))

    def run_cell(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self.worker.run_cell(payload)

    def close(self) -> None:
        self.worker.close()


class _ActorCache:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def get(self, key: str) -> dict[str, Any] | None:
        import ray

        result: dict[str, Any] | None = ray.get(self.actor.get.remote(key))
        return result

    def put(self, row: dict[str, Any]) -> None:
        self.actor.put.remote(row)


class RayPool:
    """The Ray side of a sweep: one cache actor on the driver's node and the worker actor class."""

    def __init__(self, history_path: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self.cache = ray.remote(num_cpus=0, max_concurrency=64)(_CacheReader).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote(str(history_path))
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_CellActorBody)
        self.config = config
        self.env = env  # the driver's IZ_* settings for a local Ray; nothing for a cluster (its nodes have theirs)

    def slot(self, index: int) -> RaySlot:
        return RaySlot(index, self)


class RaySlot:
    """A worker as a Ray actor (one CPU): placed by Ray on any node of the cluster."""

    def __init__(self, index: int, pool: RayPool) -> None:
        self.index = index
        self.pool = pool
        self.name = f"ray actor {index}"
        self._start()

    def _start(self) -> None:
        self.actor = self.pool.actor_cls.remote(self.pool.config, self.pool.cache, self.pool.env)

    def run(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            for ref in self.actor.run_cell.options(num_returns="streaming").remote(payload):
                msg: dict[str, Any] = ray.get(ref)
                yield msg
                if msg["type"] in ("done", "failed"):
                    return
        except RayActorError as exc:
            raise WorkerDied(f"Ray worker actor {self.index} ended: {str(exc).splitlines()[0]}") from exc
        except RayTaskError as exc:  # the worker's own code raised: a bug, reported as the cell's failure
            cause = exc.cause if getattr(exc, "cause", None) else exc
            yield {"type": "failed", "problem": f"{type(cause).__name__}: {cause}", "fix": "see the Ray logs"}

    def restart(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)
        self._start()

    def close(self) -> None:
        import ray

        with contextlib.suppress(Exception):  # a dead actor has nothing to close
            ray.get(self.actor.close.remote(), timeout=30)
        ray.kill(self.actor, no_restart=True)

    def kill(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)
