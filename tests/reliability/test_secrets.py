"""An API key goes to the endpoint's Authorization header and nowhere else; what iz writes is the user's alone.

The key lives in the variable an endpoint profile names (``api_key_env``). Real runs, exports, failing requests
(a 401 whose body echoes the key, as some servers do), an engine killed mid-run: afterwards the key string is in no
row of any table, no file under the data folder (logs, database), no export, no message, and was never in the
argument list of a child process. Files are created 0600 and folders 0700 whatever the umask.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest
from reliability_helpers import Sandbox, cmdline, db_rows, descendants, fake_profile, watch_argv
from unit_fakes import FakeEndpoint

from engine.store import open_history

KEY = "sk-test-SECRET123"
WITH_KEY = {"IZ_TEST_KEY": KEY, "IZ_LOG_LEVEL": "DEBUG"}  # debug logs too must not carry it
RUN = ["run", "larger_animal", "--dev", "3", "--test", "2"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files_holding(root: Path, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_file() and needle in p.read_bytes():
                hits.append(str(p))
    return hits


def test_the_key_reaches_the_endpoint_and_nowhere_else(sandbox: Sandbox, fake_endpoint: FakeEndpoint) -> None:
    # Three more endpoints refuse every request with an answer echoing the key back, as some servers do.
    refusals: dict[int, tuple[str, str]] = {
        401: (json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}}), "IZ_TEST_KEY"),
        400: (json.dumps({"error": {"message": f"bad request from key {KEY}"}}), "<key hidden>"),
        200: (f"<html>proxy says: key {KEY} is not welcome</html>", "<key hidden>"),  # not even JSON
    }
    refusing = {status: FakeEndpoint() for status in refusals}
    config = fake_profile(fake_endpoint.url, api_key_env="IZ_TEST_KEY")
    for status, (body, _) in refusals.items():
        refusing[status].fail_status, refusing[status].fail_body = status, body
        profile = fake_profile(refusing[status].url, name=f"f{status}", api_key_env="IZ_TEST_KEY")
        config += "\n" + profile.split("\n", 1)[1]  # without a second default_endpoint line
    sandbox.write_config(config)
    try:
        outputs = _run_export_refuse_and_kill(sandbox, fake_endpoint, refusals)
    finally:
        for f in refusing.values():
            f.close()

    # Nowhere: messages, every table, every file (database, logs, configuration, exports).
    assert not [o for o in outputs if KEY in o]
    rows = db_rows(sandbox.home / "history.db")
    assert rows["runs"] and rows["candidates"] and rows["outputs"] and rows["cache"]
    assert len([r for r in rows["runs"] if "failed" in r]) == 3, "the refused runs were recorded"
    leaks = {table: [r for r in content if KEY in repr(r)] for table, content in rows.items()}
    assert not {t: r for t, r in leaks.items() if r}
    assert (sandbox.home / "logs" / "engine.log").stat().st_size > 0
    assert _files_holding(sandbox.root, KEY.encode()) == []


def _run_export_refuse_and_kill(sandbox: Sandbox, fake_endpoint: FakeEndpoint,
                                refusals: dict[int, tuple[str, str]]) -> list[str]:
    """Everything a key could leak through; returns every output a person would have read."""
    outputs: list[str] = []
    # 1. A real run, watching the argument lists of the processes it starts while it goes on.
    fake_endpoint.delay = 0.15
    proc = sandbox.popen(*RUN, "--instruction", "Write the larger animal.", "--instruction", "Name the big one.",
                         "--json", env=WITH_KEY)
    argvs: set[str] = set()
    for seen in watch_argv(proc):
        argvs.update(seen)
    out, err = proc.communicate(timeout=120)
    outputs += [out, err]
    assert proc.returncode == 0, err
    assert any("engine serve" in a for a in argvs), f"the engine process was not seen: {argvs}"
    assert not [a for a in argvs if KEY in a], "a child process had the key in its arguments"
    # The key did reach the endpoint, in the header, so finding it nowhere else means something.
    assert {r["headers"].get("Authorization") for r in fake_endpoint.requests} == {f"Bearer {KEY}"}
    assert not [r for r in fake_endpoint.requests if KEY in json.dumps(r["body"])]
    run_id = json.loads(out)["run_id"]

    # 2. Exports and a listing of that run.
    exports = sandbox.root / "exports"
    exports.mkdir()
    for fmt in ("json", "md"):
        res = sandbox.iz("export", str(run_id), "--format", fmt, "-o", str(exports / f"run.{fmt}"), env=WITH_KEY)
        assert res.rc == 0, res.text
        outputs.append(res.text)
    res = sandbox.iz("show", str(run_id), env=WITH_KEY)
    assert res.rc == 0, res.text
    outputs.append(res.text)

    # 3. Requests refused with the key echoed back (three runs at once, one per refusing endpoint), while
    # 4. an engine is killed mid-run: its crash report (the engine's last log lines) must not carry the key either.
    failing = {status: sandbox.popen(*RUN, "--instruction", f"Answer for status {status}.", "--endpoint",
                                     f"f{status}", env=WITH_KEY) for status in refusals}
    fake_endpoint.delay = 3.0
    asked = len(fake_endpoint.requests)
    proc = sandbox.popen(*RUN, "--instruction", "One that will not finish.", env=WITH_KEY)
    for _ in watch_argv(proc, until=lambda: len(fake_endpoint.requests) > asked):
        pass  # until the engine is waiting on the endpoint
    engine_pid = next((p for p in descendants(proc.pid) if "engine serve" in cmdline(p)), None)
    assert engine_pid is not None
    os.kill(engine_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    outputs += [out, err]
    assert proc.returncode != 0 and "Traceback" not in err
    assert "engine" in err.lower(), err
    fake_endpoint.delay = 0.0
    for status, p in failing.items():
        out, err = p.communicate(timeout=120)
        outputs += [out, err]
        assert p.returncode != 0, err
        assert refusals[status][1] in err, err
        assert "Traceback" not in out + err
    return outputs


def test_files_and_folders_are_private_whatever_the_umask(sandbox: Sandbox, fake_endpoint: FakeEndpoint) -> None:
    sandbox.config = sandbox.root / "cfg" / "config.toml"
    res = sandbox.iz("config", "init", umask=0)
    assert res.rc == 0, res.text
    assert _mode(sandbox.config) == 0o600 and _mode(sandbox.config.parent) == 0o700

    sandbox.home = sandbox.root / "data" / "home"
    res = sandbox.iz(*RUN, "--test", "0", "--instruction", "Name the larger animal.", "--endpoint", fake_endpoint.url,
                     umask=0)
    assert res.rc == 0, res.text
    home = sandbox.home
    assert _mode(home.parent) == 0o700 and _mode(home) == 0o700 and _mode(home / "logs") == 0o700
    assert _mode(home / "history.db") == 0o600
    assert _mode(home / "logs" / "engine.log") == 0o600

    # While the database is open, SQLite's -wal and -shm files take the database's mode.
    old = os.umask(0)
    try:
        h = open_history(sandbox.root / "other" / "history.db")
    finally:
        os.umask(old)
    try:
        h.create_run("t", "manual", {}, {})
        for suffix in ("", "-wal", "-shm"):
            assert _mode(Path(f"{h.path}{suffix}")) == 0o600, suffix
        assert _mode(h.path.parent) == 0o700
    finally:
        h.close()


@pytest.mark.integration
def test_the_embedded_server_gets_no_key_in_its_arguments(sandbox: Sandbox) -> None:
    """The llama.cpp server the engine starts for the embedded endpoint (bundled model): its argument list holds
    no key even when key variables are set, and its log is private too."""
    env = {"IZ_TEST_KEY": KEY, "OPENAI_API_KEY": KEY}
    proc = sandbox.popen("run", "larger_animal", "--instruction", "Write the larger animal.", "--dev", "1",
                         "--test", "0", "--endpoint", "embedded", env=env)
    argvs: set[str] = set()
    for seen in watch_argv(proc, timeout=240):
        argvs.update(seen)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    servers = [a for a in argvs if "llama_cpp.server" in a]
    assert servers, f"the embedded server was not seen: {argvs}"
    assert not [a for a in argvs if KEY in a]
    assert KEY not in out + err
    logs = list((sandbox.home / "logs").glob("embedded-server-*.log"))
    assert logs and all(_mode(p) == 0o600 for p in logs)
    assert _files_holding(sandbox.home, KEY.encode()) == []
