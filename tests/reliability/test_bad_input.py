"""Bad input, through the real `iz` CLI: every case gives ONE clear message (what is wrong, where, how to fix it),
a non-zero exit, no traceback, and writes nothing (no half-imported task, no history row, no changed file).

Each case prepares a sandbox (a data folder holding a history with one finished run, a configuration path) and
returns the command to run; the test runs it as a subprocess and checks the same things for all of them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    IZ,
    Result,
    Sandbox,
    disk_state,
    on_tiny_tmpfs,
    read_only_prefix,
    tmpfs_available,
)

from engine.models import catalog
from engine.store import open_history
from engine.usage import Usage

SECRET = "sk-test-SECRET123"
#: What a person reads as the headline of an error: ours ("error: ...") or click's ("Error: ...").
HEADLINE = re.compile(r"^(error|Error): ", re.MULTILINE)
#: How a message says what to do: our "fix:" line, or click's "Try 'iz ... --help'".
FIX = re.compile(r"^\s+fix: \S|Try 'iz [a-z ]+ (-h|--help)'", re.MULTILINE)


@dataclass
class Call:
    """What a case runs, and what its message must name (``where``: a file, an option, a variable)."""

    args: list[str]
    where: str
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)
    #: The database must stay byte for byte the same (damaged or newer files are never touched).
    db_bytes: bool = False
    #: A run that starts and fails may stay in the history as "failed" (resumable); nothing else may change.
    failed_run_ok: bool = False
    #: Held while the command runs (a lock on the database, say); released before the files are compared.
    hold: Callable[[], Callable[[], None]] | None = None
    #: Extra checks after the command, given its result.
    after: Callable[[Result], None] | None = None


@dataclass
class Case:
    id: str
    what: tuple[str, ...]
    setup: Callable[[Sandbox], Call]
    exit_code: int | None = None


CASES: list[Case] = []


def case(id: str, *what: str, exit_code: int | None = None) -> Callable[[Callable[[Sandbox], Call]], Any]:
    def register(fn: Callable[[Sandbox], Call]) -> Callable[[Sandbox], Call]:
        CASES.append(Case(id, what, fn, exit_code))
        return fn

    return register


def _file(sb: Sandbox, name: str, content: str | bytes) -> Path:
    p = sb.root / "inputs" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _user_task(sb: Sandbox, folder: str, toml: str, data: str = '{"input": "a", "output": "b"}\n') -> Path:
    d = sb.home / "tasks" / folder
    d.mkdir(parents=True)
    (d / "task.toml").write_text(toml, encoding="utf-8")
    (d / "data.jsonl").write_text(data, encoding="utf-8")
    return d / "task.toml"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


RUN = ["run", "larger_animal", "--instruction", "Write the larger animal.", "--dev", "2", "--test", "0"]


# -- task files ------------------------------------------------------------------------------------------------
@case("task-toml-bad-syntax", "invalid TOML", exit_code=2)
def _(sb: Sandbox) -> Call:
    toml = _user_task(sb, "broken", 'name = "broken"\nmetric = exact_match\n')
    return Call(["tasks", "show", "broken"], str(toml))


@case("task-toml-wrong-type", "case_sensitive must be true or false", exit_code=2)
def _(sb: Sandbox) -> Call:
    toml = _user_task(sb, "typed", 'name = "typed"\nmetric = "exact_match"\ncase_sensitive = "yes"\n')
    return Call(["tasks", "show", "typed"], str(toml))


@case("task-duplicate-name", "declared more than once", exit_code=2)
def _(sb: Sandbox) -> Call:
    toml = _user_task(sb, "mine", 'name = "larger_animal"\nmetric = "exact_match"\n')
    return Call(["tasks", "show", "larger_animal"], str(toml))


@case("import-wrong-type", '"input" must be a non-empty string', exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "typed.jsonl", '{"input": "ok", "output": "b"}\n{"input": ["a", "list"], "output": "b"}\n')
    return Call(["tasks", "import", str(f)], f"{f}, line 2")


@case("import-binary", "not UTF-8", exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "binary.jsonl", b'{"input": "a", "output": "b"}\n' + bytes(range(128, 256)) * 64)
    return Call(["tasks", "import", str(f)], f"{f}, line 2")


@case("import-huge-line", "invalid JSON", exit_code=2)
def _(sb: Sandbox) -> Call:
    # A 4 MB line cut short: the message names the line, and does not repeat it.
    f = _file(sb, "huge.jsonl", '{"input": "a", "output": "b"}\n{"input": "' + "x" * 4_000_000 + "\n")
    return Call(["tasks", "import", str(f)], f"{f}, line 2")


@case("import-csv-unclosed-quote", "unreadable CSV", exit_code=2)
def _(sb: Sandbox) -> Call:
    # An unclosed quote swallows the rest of the file into one enormous cell.
    f = _file(sb, "quote.csv", 'input,output\n"cat,dog\n' + "more,rows\n" * 20_000)
    return Call(["tasks", "import", str(f)], str(f))


@case("import-empty", "no examples found", exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "empty.jsonl", "\n\n")
    return Call(["tasks", "import", str(f)], str(f))


@case("import-name-taken", "exists already (a built-in task)", "--name", exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "ok.csv", "input,output\ncat,dog\nant,bee\nfox,owl\n")
    return Call(["tasks", "import", str(f), "--name", "larger_animal"], "'larger_animal'")


@case("import-bad-name", "is not usable", exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "ok.csv", "input,output\ncat,dog\nant,bee\nfox,owl\n")
    return Call(["tasks", "import", str(f), "--name", "../escape"], "--name")


@case("import-a-folder", "is a directory", exit_code=2)
def _(sb: Sandbox) -> Call:
    d = sb.root / "inputs" / "folder.csv"
    d.mkdir(parents=True)
    return Call(["tasks", "import", str(d)], str(d))


# -- configuration ---------------------------------------------------------------------------------------------
@case("config-unknown-key", "unknown setting 'bogus'", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config("bogus = 1\n")
    return Call(["config", "show"], str(sb.config))


@case("config-wrong-type", "run.n_dev", "'many'", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config('[run]\nn_dev = "many"\n')
    return Call(["config", "show"], f"{sb.config} [run.n_dev]")


@case("config-api-key-in-file", "an API key never goes in the config", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config(f'[endpoints.x]\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "{SECRET}"\n')
    return Call(["config", "show"], str(sb.config))


@case("config-key-as-variable-name", "not a key itself", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config(f'[endpoints.x]\nbase_url = "http://127.0.0.1:1/v1"\napi_key_env = "{SECRET}"\n')
    return Call(["config", "show"], f"{sb.config} [endpoints.x.api_key_env]")


@case("config-bad-toml", "invalid TOML", "line 1", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config("[run\nn_dev = 3\n")
    return Call(["config", "show"], str(sb.config))


@case("config-binary", "not UTF-8", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.config.write_bytes(b"\xff\xfe\x00\x01binary")
    return Call(["config", "show"], str(sb.config))


@case("config-is-a-folder", "is a folder, not a file", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.config.mkdir()
    return Call(["config", "show"], str(sb.config))


@case("config-endpoint-not-http", "http(s) URL", "ftp://", exit_code=2)
def _(sb: Sandbox) -> Call:
    sb.write_config('[endpoints.x]\nbase_url = "ftp://example.org/v1"\n')
    return Call(["config", "show"], f"{sb.config} [endpoints.x.base_url]")


@case("env-variable-out-of-range", "greater than or equal to 1", "found -3", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["config", "show"], "IZ_RUN__N_DEV", env={"IZ_RUN__N_DEV": "-3"})


# -- command-line arguments ------------------------------------------------------------------------------------
@case("arg-negative", "-1 is not in the range x>=1", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["run", "larger_animal", "--budget", "-1"], "'--budget'")


@case("arg-zero", "0 is not in the range x>=1", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["run", "larger_animal", "--dev", "0"], "'--dev'")


@case("arg-word", "'many' is not a valid integer", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["run", "larger_animal", "--budget", "many"], "'--budget'")


@case("arg-out-of-range-limit", "-5 is not in the range x>=1", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["runs", "--limit", "-5"], "'--limit'")


@case("arg-unknown-choice", "'nope' is not one of", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["run", "larger_animal", "--method", "nope"], "'--method'")


@case("arg-missing-task", "give a TASK", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["run"], "iz run")


@case("arg-unknown-run", "no run with id 999")
def _(sb: Sandbox) -> Call:
    return Call(["export", "999"], str(sb.home / "history.db"))


# -- endpoints -------------------------------------------------------------------------------------------------
@case("endpoint-not-http", "is not an HTTP URL", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call([*RUN, "--endpoint", "ftp://example.org/v1"], "'ftp://example.org/v1'")


@case("endpoint-unreachable", "cannot reach", "check the server is running", exit_code=1)
def _(sb: Sandbox) -> Call:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    sb.write_config(f'[endpoints.dead]\nbase_url = "{url}"\nmodel = "m"\nmax_retries = 0\n')

    def after(res: Result) -> None:
        runs = open_history(sb.home / "history.db").runs()
        assert runs[0]["status"] == "failed" and url in runs[0]["error"], runs[0]

    return Call([*RUN, "--endpoint", "dead"], url, failed_run_ok=True, after=after)


# -- data and configuration paths ------------------------------------------------------------------------------
@case("home-is-a-file", "is a file, not a folder")
def _(sb: Sandbox) -> Call:
    f = _file(sb, "not-a-folder", "x")
    return Call(["runs"], str(f), env={"IZ_HOME": str(f)})


@case("home-under-a-file", "cannot write the task into", exit_code=2)
def _(sb: Sandbox) -> Call:
    f = _file(sb, "plain-file", "x")
    data = _file(sb, "ok.csv", "input,output\ncat,dog\nant,bee\nfox,owl\n")
    return Call(["tasks", "import", str(data)], str(f / "home"), env={"IZ_HOME": str(f / "home")})


@case("home-read-only", "cannot write the task into", "Permission denied", exit_code=2)
def _(sb: Sandbox) -> Call:
    prefix = read_only_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    data = _file(sb, "ok.csv", "input,output\ncat,dog\nant,bee\nfox,owl\n")
    sb.home.chmod(0o500)
    return Call(["tasks", "import", str(data)], str(sb.home / "tasks"), prefix=prefix)


@case("history-read-only", "read-only", exit_code=1)
def _(sb: Sandbox) -> Call:
    prefix = read_only_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    home = sb.root / "ro-home"  # a copy of the history in a folder made read-only (SQLite needs to write beside it)
    home.mkdir()
    _history_with_a_run(home / "history.db")
    home.chmod(0o500)
    return Call(["runs"], str(home / "history.db"), env={"IZ_HOME": str(home)}, prefix=prefix)


@case("history-folder-not-writable", "Permission denied", exit_code=1)
def _(sb: Sandbox) -> Call:
    prefix = read_only_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    home = sb.root / "empty-ro-home"
    home.mkdir(mode=0o500)
    return Call(["runs"], str(home / "history.db"), env={"IZ_HOME": str(home)}, prefix=prefix)


@case("home-disk-full", "No space left on device", exit_code=2)
def _(sb: Sandbox) -> Call:
    if not tmpfs_available(sb.root / "probe"):
        pytest.skip("no private tmpfs here (needs root or unprivileged user namespaces)")
    home = sb.root / "tiny-home"
    home.mkdir()
    listing = sb.root.parent / "left-on-tmpfs.txt"  # outside the compared tree
    rows = "".join(f"question {i} {'padding' * 20},answer {i}\n" for i in range(4000))  # ~600 KB
    data = _file(sb, "big.csv", "input,output\n" + rows)

    return Call(["tasks", "import", str(data)], str(home / "tasks"), env={"IZ_HOME": str(home)},
                prefix=on_tiny_tmpfs(home, "256k", listing), after=_same_on_tmpfs(listing))


@case("history-disk-full", "is full", "free some space", exit_code=1)
def _(sb: Sandbox) -> Call:
    if not tmpfs_available(sb.root / "probe"):
        pytest.skip("no private tmpfs here (needs root or unprivileged user namespaces)")
    home = sb.root / "tiny-home"
    home.mkdir()
    listing = sb.root.parent / "left-on-tmpfs.txt"
    # A history on a disk that then fills up to the last byte (SQLite cannot even make its shared-memory file).
    fill = f'{shlex.join(IZ)} runs > /dev/null && dd if=/dev/zero of="$mp/filler" bs=4k 2> /dev/null; true'
    return Call([*RUN, "--endpoint", "http://127.0.0.1:1/v1"], str(home / "history.db"), env={"IZ_HOME": str(home)},
                prefix=on_tiny_tmpfs(home, "512k", listing, before=fill), after=_same_on_tmpfs(listing))


def _same_on_tmpfs(listing: Path) -> Callable[[Result], None]:
    def after(res: Result) -> None:
        before = Path(f"{listing}.before").read_text()
        assert listing.read_text() == before, f"the full disk changed:\n{before}\n->\n{listing.read_text()}"

    return after


@case("export-disk-full", "No space left on device")
def _(sb: Sandbox) -> Call:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    return Call(["export", "1", "--format", "md", "-o", "/dev/full"], "/dev/full")


@case("export-missing-folder", "No such file or directory")
def _(sb: Sandbox) -> Call:
    out = sb.root / "no-such-folder" / "run1.md"
    return Call(["export", "1", "--format", "md", "-o", str(out)], str(out))


@case("config-init-under-a-file", "is a file, not a folder")
def _(sb: Sandbox) -> Call:
    f = _file(sb, "blocker", "x")
    return Call(["config", "init"], str(f), env={"IZ_CONFIG": str(f / "config.toml")})


# -- the history database --------------------------------------------------------------------------------------
@case("history-locked", "is locked by another program", "try again", exit_code=1)
def _(sb: Sandbox) -> Call:
    db = sb.home / "history.db"

    def hold() -> Callable[[], None]:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")  # what a sqlite3 shell left open in a transaction holds
        return conn.close  # closing rolls the transaction back

    return Call([*RUN, "--endpoint", "http://127.0.0.1:1/v1"], str(db), env={"IZ_BUSY_TIMEOUT": "1"}, hold=hold)


@case("history-newer-schema", "written by a newer release", "m999_from_the_future")
def _(sb: Sandbox) -> Call:
    db = sb.home / "history.db"
    conn = sqlite3.connect(db)
    conn.execute("insert into _sqlite_migrations (migration_set, name, applied_at) "
                 "values ('instructzero', 'm999_from_the_future', '2030-01-01')")
    conn.commit()
    conn.close()
    return Call(["runs"], str(db), db_bytes=True)


@case("history-not-a-database", "is damaged", "file is not a database")
def _(sb: Sandbox) -> Call:
    db = sb.home / "history.db"
    db.write_bytes(b"these are my notes, not a database\n" * 100)
    return Call(["runs"], str(db), db_bytes=True)


@case("history-damaged-page", "is damaged", "malformed")
def _(sb: Sandbox) -> Call:
    db = sb.home / "history.db"
    with open(db, "r+b") as f:  # the header is fine; the pages holding the runs are not
        f.seek(4096 * 2)
        f.write(b"\xde\xad\xbe\xef" * 2048 * 6)
    return Call(["runs"], str(db), db_bytes=True)


# -- model files -----------------------------------------------------------------------------------------------
@case("model-file-not-the-model", "is not pulled", "bytes", exit_code=2)
def _(sb: Sandbox) -> Call:
    models = sb.root / "models"
    entry = catalog.get("qwen2.5-coder-0.5b")
    target = models / entry.file
    models.mkdir()
    target.write_text("not a model, a text file under the model's name\n")
    return Call(["models", "verify", entry.name], str(target), env={"IZ_MODELS": str(models)})


@case("model-unknown-name", "unknown model 'qwen-9000'", exit_code=2)
def _(sb: Sandbox) -> Call:
    return Call(["models", "verify", "qwen-9000"], "iz models list")


@case("embedded-model-is-text", "is not a GGUF model file", exit_code=1)
def _(sb: Sandbox) -> Call:
    notes = _file(sb, "notes.gguf", "hello, I am a text file\n")
    return Call([*RUN, "--endpoint", "embedded", "--model", str(notes)], str(notes))


@case("generator-model-is-text", "is not a GGUF model file", exit_code=2)
def _(sb: Sandbox) -> Call:
    notes = _file(sb, "generator.gguf", "hello, I am a text file too\n")
    return Call(["run", "larger_animal", "--budget", "1", "--init", "1", "--dev", "2", "--test", "0",
                 "--endpoint", "http://127.0.0.1:1/v1"], str(notes), env={"IZ_GENERATOR__MODEL": str(notes)})


# ---------------------------------------------------------------------------------------------------------------
def _history_with_a_run(db: Path) -> None:
    h = open_history(db)
    rid = h.create_run("larger_animal", "manual", {"method": "manual", "instructions": ["Name it."]},
                       {"name": "fake", "base_url": "http://127.0.0.1:1/v1", "model": "m"})
    cid = h.add_candidate(rid, 0, 0, None, "Name it.")
    outputs = [{"input": "cat, dog", "answers": ["dog"], "output": "dog", "score": 1.0}]
    h.record_score(cid, dev_score=1.0, scores=[1.0], outputs=outputs, usage=Usage(1, 0, 10, 2))
    h.update_run(rid, status="finished", evaluations=1, best_candidate_id=cid, best_instruction="Name it.",
                 best_dev_score=1.0)
    h.close()


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_message_and_writes_nothing(c: Case, sandbox: Sandbox) -> None:
    _history_with_a_run(sandbox.home / "history.db")
    call = c.setup(sandbox)
    db = sandbox.home / "history.db"
    before = disk_state(sandbox.root, db, db_bytes=call.db_bytes)
    release = call.hold() if call.hold else None
    try:
        res = sandbox.iz(*call.args, env=call.env, prefix=call.prefix)
    finally:
        if release is not None:
            release()
    text = res.text
    shown = f"exit {res.rc}\n--- stdout\n{res.out}\n--- stderr\n{res.err}"

    assert res.rc != 0, shown
    if c.exit_code is not None:
        assert res.rc == c.exit_code, shown
    assert "Traceback" not in text, shown
    assert len(HEADLINE.findall(text)) == 1, f"one error message, not several:\n{shown}"
    assert FIX.search(text), f"the message says how to fix it:\n{shown}"
    for what in c.what:
        assert what in text, f"{what!r} missing:\n{shown}"
    assert call.where in text, f"the message names where ({call.where!r}):\n{shown}"
    assert SECRET not in text, shown
    assert len(res.err) < 2500, f"a short message, not a dump ({len(res.err)} characters):\n{res.err[:3000]}"

    after = disk_state(sandbox.root, db, db_bytes=call.db_bytes)
    if call.failed_run_ok:
        _only_a_failed_run(before, after)
    else:
        assert after == before, "the command changed files or the history"
    if call.after is not None:
        call.after(res)


def _only_a_failed_run(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The history gained one run, failed, with nothing scored; no other file changed."""
    assert {k: v for k, v in after.items() if k != "db"} == {k: v for k, v in before.items() if k != "db"}
    new_runs = set(after["db"]["runs"]) - set(before["db"]["runs"])
    assert len(new_runs) == 1
    for table in ("outputs", "scores", "cache", "marks"):
        assert after["db"][table] == before["db"][table], table
    scored = [row for row in after["db"]["candidates"] if "scored" in row]
    assert scored == [row for row in before["db"]["candidates"] if "scored" in row]


def test_the_locked_history_is_usable_again_once_released(sandbox: Sandbox) -> None:
    """Reads go on while another program holds the write lock (WAL), and writes resume once it lets go."""
    db = sandbox.home / "history.db"
    _history_with_a_run(db)
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        res = sandbox.iz("runs", "--json", env={"IZ_BUSY_TIMEOUT": "1"})
        assert res.rc == 0, res.text
        assert [r["id"] for r in json.loads(res.out)] == [1]
    finally:
        timer = threading.Timer(0.5, conn.close)  # let go while the writer below is waiting
        timer.start()
    h = open_history(db)
    try:
        h.set_mark(1, star=True)
        assert h.candidate(1)["star"] == 1
    finally:
        h.close()
        timer.join()


def test_no_temporary_files_are_left_by_a_failed_export(sandbox: Sandbox) -> None:
    _history_with_a_run(sandbox.home / "history.db")
    out_dir = sandbox.root / "exports"
    out_dir.mkdir()
    ok = sandbox.iz("export", "1", "-o", str(out_dir / "run1.json"))
    assert ok.rc == 0, ok.text
    assert json.loads((out_dir / "run1.json").read_text())["runs"][0]["id"] == 1
    assert os.listdir(out_dir) == ["run1.json"]
