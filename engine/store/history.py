"""The local history: every run, candidate, output, cached response and user mark, in one SQLite file.

Why SQLite through sqlite-utils: one file the user can copy or open with any SQLite tool, transactions for
"all or nothing" writes, WAL so the TUI can read while the engine writes, and FTS5 (ranked by bm25) for search.
The engine is the only writer of runs, candidates, outputs and cache rows; front ends write only marks.
Nothing here ever stores an API key: endpoint descriptions come from :meth:`EndpointProfile.public`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from engine import paths
from engine.errors import SchemaTooNewError, StoreError
from engine.store.migrations import known_names, migrations
from engine.store.rows import _decoded, _dumps, _loads, now  # noqa: F401 - now is the store's clock for callers
from engine.store.search import CANDIDATE_COLUMNS, CANDIDATE_JOINS, search
from engine.store.sweep_rows import SweepRows
from engine.usage import Usage

#: How long a write waits for another process holding the database (an engine, the TUI) before giving up.
BUSY_TIMEOUT_S = 30.0


def busy_timeout_s() -> float:
    """The busy timeout in seconds: ``$IZ_BUSY_TIMEOUT`` when set to a positive number, else 30."""
    try:
        value = float(os.environ.get("IZ_BUSY_TIMEOUT") or BUSY_TIMEOUT_S)
    except ValueError:
        return BUSY_TIMEOUT_S
    return value if value > 0 else BUSY_TIMEOUT_S


def _no_room(folder: Path) -> bool:
    """Whether the disk holding ``folder`` is (nearly) full: SQLite reports a full disk as a plain I/O error when
    it is its shared-memory file (-shm) that cannot grow."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def open_history(path: Path | str | None = None) -> History:
    """Open (creating if needed) the history database and bring its schema up to date."""
    return History(Path(path) if path else paths.history_db())


class History(SweepRows):
    """A handle on the history database. Safe to share between threads of one process (writes are locked)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.busy_timeout_s = busy_timeout_s()
        try:
            # Created 0600 before SQLite opens it: its -wal and -shm files take the same mode.
            paths.private_file(path)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=self.busy_timeout_s)
            self.db = Database(conn)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            self._migrate()
        except StoreError:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, "open") or exc from None
        except OSError as exc:
            blocker = next((p for p in path.parents if p.is_file()), None)
            where = f"{exc.filename}: " if exc.filename and str(exc.filename) != str(path) else ""
            what = f"{blocker} is a file, not a folder" if blocker else f"{where}{exc.strerror or exc}"
            raise StoreError(
                f"cannot create the history database {path}: {what}",
                "check permissions and free space, or set IZ_HOME to a writable folder",
            ) from None

    def _error(self, exc: sqlite3.DatabaseError, doing: str) -> StoreError | None:
        """What a SQLite error means for a person: a locked, full, read-only or damaged history, always naming
        the file; None for anything else (a bug, to be raised as it is), except when opening the file."""
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            return StoreError(
                f"the history database {self.path} is locked by another program (waited "
                f"{self.busy_timeout_s:g} s to {doing} it)",
                "close the program holding it (a sqlite3 shell with an open transaction, say) and try again",
            )
        if "full" in low or ("i/o error" in low and _no_room(self.path.parent)):
            what = ("the last change was not saved (earlier ones are)" if doing == "write" else
                    f"SQLite has no room to {doing} it")
            return StoreError(
                f"the disk holding {self.path} is full; {what}",
                "free some space, then try again (resume a run with `iz run --resume RUN_ID`)",
            )
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return StoreError(
                f"cannot {doing} the history database {self.path}: {text} (the file or its folder is read-only or "
                "missing)",
                "make the folder and file writable by you, or set IZ_HOME to a writable folder",
            )
        if "malformed" in low or "not a database" in low or "corrupt" in low:
            return StoreError(
                f"the history database {self.path} is damaged ({text})",
                "move it away (a new one is created; `sqlite3 history.db .recover` may save its rows), or set "
                "IZ_HOME to another folder",
            )
        if doing != "open":
            return None
        return StoreError(f"cannot open the history database {self.path}: {text}",
                          "check the file is a SQLite database and the disk has room, or set IZ_HOME to another "
                          "folder")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read, with SQLite failures (a damaged or locked file) turned into a :class:`StoreError`."""
        try:
            return list(self.db.query(sql, args))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, "read") or exc from None

    def data_version(self) -> int:
        """A number that changes whenever another connection (an engine, another iz) commits a change: cheap
        enough to poll, so a screen can refresh when runs go on elsewhere."""
        try:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, "read") or exc from None

    # -- schema -------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        applied = [m.name for m in migrations.applied(self.db)]
        unknown = [n for n in applied if n not in known_names()]
        if unknown:
            raise SchemaTooNewError(
                f"{self.path} was written by a newer release of instructzero (schema steps it does not know: "
                f"{', '.join(unknown)})",
                "upgrade instructzero (pip install -U instructzero), or set IZ_HOME to use another history",
            )
        pending = migrations.pending(self.db)
        if not pending:
            return  # nothing to write: a read-only or busy file still opens
        with self._lock:
            if all(m.transactional for m in pending):
                # Under the write lock, so two processes opening a new file at once do not both create it: the
                # second waits, then finds nothing pending (apply looks again).
                with self.transaction():
                    migrations.apply(self.db)
            else:
                migrations.apply(self.db)

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One writer at a time, all or nothing. A full disk rolls back and says so.

        The outermost transaction begins IMMEDIATE: it takes the write lock first, waiting up to the busy timeout
        for another process (a second engine, the TUI writing a mark) to finish. A plain BEGIN would read first
        and then have to upgrade to a write, which SQLite refuses at once ("database is locked", no waiting) when
        another connection wrote in between. Nested calls are savepoints inside it."""
        with self._lock:
            try:
                if self.db.conn.in_transaction:
                    with self.db.atomic():
                        yield
                else:
                    self.db.execute("BEGIN IMMEDIATE")
                    try:
                        yield
                    except BaseException:
                        self.db.rollback()
                        raise
                    try:
                        self.db.execute("COMMIT")
                    except BaseException:
                        self.db.rollback()
                        raise
            except sqlite3.DatabaseError as exc:
                raise self._error(exc, "write") or exc from None

    # Plain SQL for the writes a run makes per candidate and per example: sqlite-utils' insert/update read the
    # table's schema on every call (a scored candidate with 10 outputs: 7.6 ms that way, 2.0 ms this way;
    # bench/history_scale.py fills 100,000 of them).
    def _insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(f"[{c}]" for c in row)
        marks = ", ".join("?" * len(row))
        return int(self.db.execute(f"insert into [{table}] ({cols}) values ({marks})", list(row.values())).lastrowid)

    def _insert_many(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        names = list(rows[0])
        cols = ", ".join(f"[{c}]" for c in names)
        marks = ", ".join("?" * len(names))
        self.db.conn.executemany(f"insert into [{table}] ({cols}) values ({marks})",
                                 [[r[c] for c in names] for r in rows])

    def _update(self, table: str, row_id: int, fields: dict[str, Any]) -> None:
        if not fields:
            return
        sets = ", ".join(f"[{c}] = ?" for c in fields)
        cur = self.db.execute(f"update [{table}] set {sets} where id = ?", [*fields.values(), row_id])
        if cur.rowcount == 0:
            raise StoreError(f"no {table[:-1]} with id {row_id} in {self.path}", "list runs with `iz runs`")

    # -- runs ---------------------------------------------------------------------------------------------
    def create_run(
        self,
        task: str,
        method: str,
        settings: dict[str, Any],
        endpoint: dict[str, Any],
        provenance: dict[str, Any] | None = None,
    ) -> int:
        with self.transaction():
            row = {
                "task": task,
                "method": method,
                "settings_json": json.dumps(settings),
                "endpoint_json": json.dumps(endpoint),
                "provenance_json": _dumps(provenance),
                "status": "created",
                "created_at": now(),
                "evaluations": 0,
                "calls": 0,
                "calls_saved": 0,
                "evaluations_saved": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "paid_prompt_tokens": 0,
                "paid_completion_tokens": 0,
                "seconds": 0.0,
            }
            return int(self.db["runs"].insert(row).last_pk)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.transaction():
            self.db["runs"].update(run_id, fields)

    def run(self, run_id: int) -> dict[str, Any]:
        rows = list(self._query("select * from runs where id = ?", [run_id]))
        if not rows:
            raise StoreError(f"no run with id {run_id} in {self.path}", "list runs with `iz runs`")
        return self._run_row(rows[0])

    def runs(self, task: str | None = None, method: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        where, args = [], []
        if task:
            where.append("task = ?")
            args.append(task)
        if method:
            where.append("method = ?")
            args.append(method)
        sql = "select * from runs" + (" where " + " and ".join(where) if where else "") + " order by id desc"
        sql += f" limit {int(limit)}"
        return [self._run_row(r) for r in self._query(sql, args)]

    @staticmethod
    def _run_row(row: dict[str, Any]) -> dict[str, Any]:
        row = _decoded(row, "settings", "endpoint", "provenance")
        row["settings"] = row["settings"] or {}
        row["endpoint"] = row["endpoint"] or {}
        return row

    # -- candidates ---------------------------------------------------------------------------------------
    def add_candidate(
        self, run_id: int, iteration: int, position: int, z: Sequence[float] | None, instruction: str,
        decoding: str | None = None,
    ) -> int:
        """``decoding``: "greedy" or "sampled" for a soft prompt's text (None when no soft prompt wrote it)."""
        with self.transaction():
            return self._insert(
                "candidates",
                {
                    "run_id": run_id,
                    "iteration": iteration,
                    "position": position,
                    "z_json": _dumps(list(z) if z is not None else None),
                    "instruction": instruction,
                    "decoding": decoding,
                    "status": "proposed",
                    "created_at": now(),
                },
            )

    def record_score(
        self,
        candidate_id: int,
        *,
        dev_score: float,
        scores: Sequence[float],
        outputs: Sequence[dict[str, Any]],
        usage: Usage,
        duplicate_of: int | None = None,
        run_totals: dict[str, Any] | None = None,
        stopped_early: bool = False,
    ) -> None:
        """Store a candidate's score, its per-example outputs, what it cost and the run's running totals in ONE
        transaction, so a crash leaves either all of it or none (resume then re-scores only what is missing).
        ``stopped_early``: racing stopped it, so ``scores`` covers only the dev examples it answered."""
        with self.transaction():
            self._update(
                "candidates",
                candidate_id,
                {
                    "status": "scored",
                    "dev_score": dev_score,
                    "scores_json": json.dumps(list(scores)),
                    "duplicate_of": duplicate_of,
                    "stopped_early": 1 if stopped_early else None,
                    **usage.as_dict(),
                    "latency_s": sum(o.get("latency_s") or 0.0 for o in outputs),
                    "cache_hit": int(usage.calls == 0 and usage.calls_saved > 0),
                },
            )
            self._insert_outputs(candidate_id, "dev", None, outputs)
            if run_totals:
                run_id = self.db.execute("select run_id from candidates where id = ?", [candidate_id]).fetchone()[0]
                self._update("runs", run_id, run_totals)

    def _insert_outputs(
        self, candidate_id: int, split: str, score_id: int | None, outputs: Sequence[dict[str, Any]]
    ) -> None:
        rows = []
        for i, o in enumerate(outputs):
            rows.append(
                {
                    "candidate_id": candidate_id,
                    "split": split,
                    "score_id": score_id,
                    "example_index": o.get("example_index", i),
                    "input": o["input"],
                    "answers_json": json.dumps(o["answers"]),
                    "output": o["output"],
                    "score": o["score"],
                    "cache_hit": int(bool(o.get("cache_hit"))),
                    "prompt_tokens": o.get("prompt_tokens"),
                    "completion_tokens": o.get("completion_tokens"),
                    "latency_s": o.get("latency_s"),
                }
            )
        self._insert_many("outputs", rows)

    def add_score(
        self,
        candidate_id: int,
        *,
        kind: str,
        split: str,
        endpoint: dict[str, Any],
        metric: str,
        score: float,
        outputs: Sequence[dict[str, Any]],
    ) -> int:
        """A test or rerank score of a candidate, with its outputs, in one transaction."""
        with self.transaction():
            sid = self._insert(
                "scores",
                {
                    "candidate_id": candidate_id,
                    "kind": kind,
                    "split": split,
                    "n_examples": len(outputs),
                    "endpoint_json": json.dumps(endpoint),
                    "metric": metric,
                    "score": score,
                    "created_at": now(),
                },
            )
            self._insert_outputs(candidate_id, kind, sid, outputs)
            return sid

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        rows = list(self._query(self._cand_sql("c.id = ?"), [candidate_id]))
        if not rows:
            raise StoreError(f"no candidate with id {candidate_id}", "list a run's candidates with `iz show RUN_ID`")
        return self._cand_row(rows[0])

    def candidates(self, run_id: int, status: str | None = None) -> list[dict[str, Any]]:
        where, args = "c.run_id = ?", [run_id]
        if status:
            where += " and c.status = ?"
            args.append(status)
        return [self._cand_row(r) for r in self._query(self._cand_sql(where) + " order by c.position", args)]

    @staticmethod
    def _cand_sql(where: str) -> str:
        return (
            f"select {CANDIDATE_COLUMNS}, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'test' "
            " order by s.id desc limit 1) as test_score, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'rerank' "
            " order by s.id desc limit 1) as rerank_score "
            f"{CANDIDATE_JOINS} where {where}"
        )

    @staticmethod
    def _cand_row(row: dict[str, Any]) -> dict[str, Any]:
        return _decoded(row, "z", "scores")

    def outputs(self, candidate_id: int, split: str | None = None) -> list[dict[str, Any]]:
        sql, args = "select * from outputs where candidate_id = ?", [candidate_id]
        if split:
            sql += " and split = ?"
            args.append(split)
        return [_decoded(r, "answers") for r in self._query(sql + " order by id", args)]

    def scores(self, candidate_id: int) -> list[dict[str, Any]]:
        rows = self._query("select * from scores where candidate_id = ? order by id", [candidate_id])
        return [_decoded(r, "endpoint") for r in rows]

    def scored_instruction(self, run_id: int, instruction: str) -> dict[str, Any] | None:
        """The earliest scored candidate of a run with this exact instruction (the dedup look-up)."""
        rows = list(
            self._query(
                "select * from candidates where run_id = ? and instruction = ? and status = 'scored' "
                "and duplicate_of is null order by position limit 1",
                [run_id, instruction],
            )
        )
        return self._cand_row(rows[0]) if rows else None

    # -- search (engine/store/search.py) ----------------------------------------------------------------
    def search(self, query: str | None = None, *, task: str | None = None, run_id: int | None = None,
               method: str | None = None, min_score: float | None = None, max_score: float | None = None,
               starred: bool | None = None, order: str = "relevance", limit: int = 500, duplicates: bool = False,
               group: bool = False) -> list[dict[str, Any]]:
        """Candidates matching the filters, full-text ranked with a query (:func:`engine.store.search.search`)."""
        return search(self, query, task=task, run_id=run_id, method=method, min_score=min_score,
                      max_score=max_score, starred=starred, order=order, limit=limit, duplicates=duplicates,
                      group=group)

    # -- marks (the only thing front ends write) ----------------------------------------------------------
    def set_mark(
        self,
        candidate_id: int,
        *,
        star: bool | None = None,
        note: str | None = None,
        manual_rank: int | None = None,
    ) -> dict[str, Any]:
        with self.transaction():
            table = self.db["marks"]
            try:
                row = dict(table.get(candidate_id))
            except Exception:  # sqlite_utils.db.NotFoundError
                row = {"candidate_id": candidate_id, "star": 0, "note": None, "manual_rank": None}
            if star is not None:
                row["star"] = int(star)
            if note is not None:
                row["note"] = note or None
            if manual_rank is not None:
                row["manual_rank"] = manual_rank if manual_rank > 0 else None
            row["updated_at"] = now()
            table.upsert(row, pk="candidate_id")
            return row

    # -- cache --------------------------------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        rows = list(self._query("select * from cache where key = ?", [key]))
        return _decoded(rows[0], "params") if rows else None

    def cache_put(self, row: dict[str, Any]) -> None:
        with self.transaction():
            row = dict(row)
            row["params_json"] = json.dumps(row.pop("params"), ensure_ascii=False)
            row["created_at"] = now()
            # Plain SQL: one answer per black-box call goes through here (3,100 a paper-budget run), and
            # sqlite-utils' upsert reads the table's schema every time (bench/engine_speed.py, part b).
            cols = ", ".join(f"[{c}]" for c in row)
            sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in row if c != "key")
            self.db.execute(f"insert into cache ({cols}) values ({', '.join('?' * len(row))}) "
                            f"on conflict(key) do update set {sets}", list(row.values()))
