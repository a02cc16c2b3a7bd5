"""The embedded black box: llama.cpp's OpenAI-compatible server running a local GGUF model.

Any model of the catalog (:mod:`engine.models.catalog`, beside this module: the bundled SmolLM2-135M-Instruct, or
a pulled Qwen2.5-Coder) or any ``.gguf`` file can be served; :func:`server_for` gives the one server of the
process for that model.

Why a separate server process rather than calling llama.cpp in-process: the engine then talks to the embedded
model exactly as to any remote endpoint (same client, cache, retries, tests), and a crash in native code cannot take
the engine down with it.

Never an orphan: the server is started in its own session (a Ctrl-C in the terminal reaches only the engine, which
stops it cleanly), with ``PR_SET_PDEATHSIG = SIGTERM`` on Linux so the kernel ends it even when the engine is killed
with SIGKILL, plus :meth:`EmbeddedServer.stop` for ordinary exits.

One owner of the life cycle: :data:`servers`, the process's :class:`EmbeddedServers` pool, creates at most one
server per model file (every run of an engine process, and every black-box client, shares it) and stops them all:
the engine calls :meth:`EmbeddedServers.stop_all` when it closes, and the pool's one ``atexit`` hook does it for
any other exit. A server built directly (``EmbeddedServer(...)``, a context manager) is its maker's to stop.

Light on purpose: the standard library and httpx only; ``llama_cpp`` is never imported here (only located), so
importing this module costs nothing.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from engine import paths
from engine.errors import EndpointError
from engine.models import catalog

log = logging.getLogger(__name__)

#: The name the bundled model's server lists under /v1/models (old runs stored it as their model).
MODEL_ALIAS = "smollm2-135m-instruct"
STARTUP_TIMEOUT_S = 120.0
KEEP_LOGS = 10
_PR_SET_PDEATHSIG = 1


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this process when the thread that started it dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. The server may be started
# from a short-lived worker thread (asyncio.to_thread), so every start that is not on the main thread goes through
# one long-lived thread that lasts as long as the process.
_spawner: concurrent.futures.ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def spawn_tied(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child that the kernel ends when this process dies (the embedded server, a sweep's workers)."""
    global _spawner
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(args, **kwargs)
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="iz-spawner")
    return _spawner.submit(subprocess.Popen, args, **kwargs).result()


def _default_threads() -> int:
    """Every core the process may use (at most 8): a run alternates between writing instructions and scoring them,
    so while the server answers, the generator is idle.

    Measured on the 2-core machine with Qwen2.5-Coder-1.5B: 0.55 s a short answer on 1 thread, 0.30 s on 2. The
    server runs with ``OMP_WAIT_POLICY=PASSIVE`` (see :meth:`EmbeddedServer._start_once`): llama.cpp's OpenMP
    threads otherwise spin at their barriers and stall for seconds whenever another process wants a core
    (0.33 s a call with it, so passive waiting costs little).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


class EmbeddedServer:
    """llama.cpp's server on 127.0.0.1 and a free port, for one engine process.

    ``start()`` is idempotent and returns the base URL (``http://127.0.0.1:PORT/v1``); ``stop()`` ends the process
    (terminate, wait, kill). Usable as a context manager. :data:`servers` gives the one instance of the process
    for a model.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        alias: str = MODEL_ALIAS,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        log_path: Path | None = None,
    ) -> None:
        self._model_path = Path(model_path) if model_path else None
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self._log_path = log_path
        self.port: int | None = None
        self.base_url: str | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = catalog.default_model_path()
        return self._model_path

    @property
    def identity(self) -> str:
        """What the cache keys on instead of the URL, whose port changes every process."""
        return f"embedded:{self.model_path.name}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the server if it is not running; wait until it answers; return its base URL."""
        with self._lock:
            if self.running and self.base_url:
                return self.base_url
            self._stop_locked()
            if importlib.util.find_spec("llama_cpp") is None:
                raise EndpointError(
                    "the embedded endpoint needs llama.cpp's server, which is not installed",
                    "pip install 'llama-cpp-python[server]', or configure another endpoint instead of 'embedded'",
                )
            model = self.model_path
            last: EndpointError | None = None
            for _ in range(3):  # a free port can be taken between our check and the server's bind: try another
                try:
                    return self._start_once(model)
                except _PortTaken as exc:
                    last = exc.error
            assert last is not None
            raise last

    def _start_once(self, model: Path) -> str:
        self.port = _free_port(self.host)
        self.log_path = self._log_path or self._new_log_path()
        paths.private_file(self.log_path)  # 0600 in a 0700 folder, whatever the umask
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the server's lifetime
        args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
        ]
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        log.info("starting the embedded server: %s (log: %s)", " ".join(args), self.log_path)
        self._proc = spawn_tied(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )
        url = f"http://{self.host}:{self.port}/v1"
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    tail = self.log_tail()
                    self._stop_locked()
                    err = EndpointError(
                        f"the embedded llama.cpp server exited with code {code} while starting; its log "
                        f"({self.log_path}) ends with:\n{tail}",
                        "read the log above; check the model file and free memory, or configure another endpoint",
                    )
                    if "address already in use" in tail.lower():
                        raise _PortTaken(err)
                    raise err
                try:
                    if client.get(url + "/models").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self._stop_locked()
                    raise EndpointError(
                        f"the embedded llama.cpp server did not answer within {self.startup_timeout_s:g}s; its log "
                        f"({self.log_path}) ends with:\n{tail}",
                        "the machine may be overloaded: try again, or configure another endpoint",
                    )
                time.sleep(0.1)
        self.base_url = url
        log.info("embedded server ready at %s (pid %d)", url, self._proc.pid)
        return url

    def _new_log_path(self) -> Path:
        folder = paths.logs_dir()
        with contextlib.suppress(OSError):
            old = sorted(folder.glob("embedded-server-*.log"), key=lambda p: p.stat().st_mtime)
            for p in old[: max(0, len(old) - (KEEP_LOGS - 1))]:
                p.unlink(missing_ok=True)
        return folder / f"embedded-server-{os.getpid()}.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for error messages)."""
        if not self.log_path:
            return "(no log)"
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(log unreadable)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the server: SIGTERM, wait, then SIGKILL. Safe to call twice, or when it never started."""
        with self._lock:
            self._stop_locked(timeout_s)

    def _stop_locked(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        self.base_url = None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout_s)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedServers:
    """The embedded servers of a process, one per model file: the single owner of their life cycle.

    :meth:`get` creates a server on first use (not started: :meth:`EmbeddedServer.start` does that, once);
    :meth:`for_model` maps an embedded profile's model to it; :meth:`stop_all` ends every one of them, and is
    registered with ``atexit`` once, when the pool is made.
    """

    def __init__(self) -> None:
        self._servers: dict[str, EmbeddedServer] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def get(self, model_path: Path | str | None = None, **options: Any) -> EmbeddedServer:
        """The server for ``model_path`` (default: the bundled SmolLM2), created on first use.

        One server per model file, keyed on its resolved path: two profiles naming the same model share it, a
        judge or proposer profile on another model gets its own. ``options`` (the constructor's) apply only when
        this call creates it.
        """
        path = Path(model_path) if model_path else catalog.default_model_path()
        key = str(path.expanduser().resolve())
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = EmbeddedServer(path, **options)
            return server

    def for_model(self, model: str | None) -> EmbeddedServer:
        """The server for an embedded profile's ``model``: a catalog name (or alias), a ``.gguf`` path, or empty
        for the bundled SmolLM2. A catalog model that is not pulled yet raises the error that says how to pull
        it; the name the server lists under /v1/models is the profile's own name for the model."""
        spec = (model or "").strip()
        if spec == "auto":  # a profile that skipped Config resolution: the default black box, as configured
            spec = catalog.effective_default("blackbox")
        if not spec or spec == MODEL_ALIAS:
            return self.get()
        if catalog.is_catalog_name(spec):
            entry = catalog.get(spec)
            if entry.bundled:
                return self.get()
            return self.get(catalog.model_path(entry.name), alias=entry.name)
        path = Path(spec).expanduser()
        if not path.is_file():
            raise EndpointError(
                f"the embedded endpoint's model {spec!r} is neither a catalog model nor a .gguf file",
                "set the embedded profile's model to one of `iz models list` or to a .gguf path",
            )
        problem = catalog.not_gguf(path)
        if problem:
            raise EndpointError(
                f"the embedded endpoint's model {path} {problem}",
                "point the profile's model (or --model) at a .gguf file, or use a name from `iz models list`",
            )
        return self.get(path, alias=path.stem)

    def all(self) -> list[EmbeddedServer]:
        with self._lock:
            return list(self._servers.values())

    def base_url(self) -> str | None:
        """The URL of a running server, if any (what ``status`` shows)."""
        return next((s.base_url for s in self.all() if s.running and s.base_url), None)

    def stop_all(self) -> None:
        """Stop every server of the pool (they stay in it: a later run starts its model's server again)."""
        for server in self.all():
            server.stop()


#: The process's embedded servers.
servers = EmbeddedServers()


def server_for(model: str | None) -> EmbeddedServer:
    """The process's server for an embedded profile's ``model`` (see :meth:`EmbeddedServers.for_model`)."""
    return servers.for_model(model)


def checked_endpoint(config: Any, endpoint: str | None, model: str | None) -> tuple[str, Any]:
    """``config.endpoint(endpoint, model)``, checked as far as it can be without starting anything: an unknown
    profile, or an embedded model that is not there, fails here with the error that names the fix (what the CLI
    checks before it records or estimates anything)."""
    name, profile = config.endpoint(endpoint, model)
    if profile.embedded:
        servers.for_model(profile.model)
    return name, profile


class _PortTaken(Exception):
    def __init__(self, error: EndpointError) -> None:
        super().__init__(str(error))
        self.error = error
