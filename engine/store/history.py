"""The local history: every run, candidate, output, cached response and user mark, in one SQLite file.

Why SQLite through sqlite-utils: one file the user can copy or open with any SQLite tool, transactions for
"all or nothing" writes, WAL so the TUI can read while the engine writes, and FTS5 (ranked by bm25) for search.
The engine is the only writer of runs, candidates, outputs and cache rows; front ends write only marks.
Nothing here ever stores an API key: endpoint descriptions come from :meth:`EndpointProfile.public`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
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
from engine.usage import Usage


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _decoded(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """A row with its ``NAME_json`` columns decoded and handed out as ``NAME`` (callers never see JSON text)."""
    row = dict(row)
    for name in names:
        if f"{name}_json" in row:
            row[name] = _loads(row.pop(f"{name}_json"))
    return row


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


class History:
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
            "select c.*, r.task, r.method, m.star, m.note, m.manual_rank, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'test' "
            " order by s.id desc limit 1) as test_score, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'rerank' "
            " order by s.id desc limit 1) as rerank_score "
            "from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id "
            f"where {where}"
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

    # -- search -------------------------------------------------------------------------------------------
    def search(
        self,
        query: str | None = None,
        *,
        task: str | None = None,
        run_id: int | None = None,
        method: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        starred: bool | None = None,
        order: str = "relevance",
        limit: int = 500,
        duplicates: bool = False,
        group: bool = False,
    ) -> list[dict[str, Any]]:
        """Candidates matching the filters. With a query, full-text search ranked by bm25 (best first).

        Repeats of an instruction within a run (``duplicate_of`` set) are left out unless ``duplicates``: they
        carry no new information, only the soft prompt that produced the same text again.

        ``group``: each instruction text once (across runs), as its best candidate (highest dev score) with
        ``group_count`` (how many of the matching candidates have that text) and the group's best test and rerank
        scores as ``test_score`` / ``rerank_score``; the orders apply to the groups (relevance: the best bm25).
        """
        where, args = ["c.status = 'scored'"], []
        if not duplicates:
            where.append("c.duplicate_of is null")
        joins = ""
        rank = "null"
        if query and query.strip():
            joins = " join candidates_fts f on f.rowid = c.id"
            where.append("candidates_fts match ?")
            args.append(fts_query(query))
            rank = "bm25(candidates_fts)"
        for cond, val in (("r.task = ?", task), ("c.run_id = ?", run_id), ("r.method = ?", method)):
            if val is not None:
                where.append(cond)
                args.append(val)
        if min_score is not None:
            where.append("c.dev_score >= ?")
            args.append(min_score)
        if max_score is not None:
            where.append("c.dev_score <= ?")
            args.append(max_score)
        if starred:
            where.append("coalesce(m.star, 0) = 1")
        try:
            if group and rank == "null":
                return [self._cand_row(r) for r in self._grouped_page(" and ".join(where), args, order, int(limit))]
            build = _group_sql if group else _search_sql
            sql, args = build(" and ".join(where), args, joins, rank, order, int(limit))
            return [self._cand_row(r) for r in self._query(sql, args)]
        except sqlite3.OperationalError as exc:
            raise StoreError(f"bad search {query!r}: {exc}", "use plain words; quote a phrase with \"\"") from None

    def _grouped_page(self, where: str, args: list[Any], order: str, limit: int) -> list[dict[str, Any]]:
        """A grouped page without a query, found by walking the candidates in the page's order and stopping at
        ``limit`` distinct texts, instead of grouping every matching candidate first (``_group_sql``).

        Why it is exact: walked by dev score (desc), then id, the first candidate of each text is its group's best
        member, and those first candidates come in the groups' order; walked by id (desc), they come in the order of
        each group's newest member. A rerank (or manual-rank) sort first takes the groups that have such a score
        (or rank) — few: they are found and sorted by their keys — then the others by the dev-score walk. Only the
        page's texts are then counted and scored. On 100,000 candidates the default page reads about 600 rows where
        grouping read all of them (bench/history_scale.py: 290 -> 30 ms). A filter that few candidates pass (starred)
        walks further; it stays under 100 ms there.
        """
        frm = _group_from(where, order)
        limit = limit if limit >= 0 else 2**62  # SQLite's "limit -1": no limit
        first: list[str] = []
        if order in ("rerank", "rank"):
            has = ("c.id in (select candidate_id from scores where kind in ('test', 'rerank'))" if order == "rerank"
                   else "m.manual_rank is not null")
            texts = [r["instruction"] for r in self._query(
                f"select distinct c.instruction {frm} where {where} and {has}", args)]
            key = "best_key" if order == "rerank" else "best_rank"
            sign = -1 if order == "rerank" else 1
            keyed = [g for g in self._group_stats(frm, where, args, texts, order).values() if g[key] is not None]
            first = [g["instruction"] for g in sorted(keyed, key=lambda g: (sign * g[key], -g["best_dev"], g["id"]))]
            first = first[:limit]
        seen = set(first)
        try:
            for (text,) in self.db.execute(_walk_sql(frm, where, order), args) if len(first) < limit else ():
                if text is not None and text not in seen:
                    seen.add(text)
                    first.append(text)
                    if len(first) == limit:
                        break
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, "read") or exc from None
        groups = self._group_stats(frm, where, args, first, order)
        if not first:
            return []
        rows = {r["id"]: r for r in self._query(
            "select c.*, r.task, r.method, m.star, m.note, m.manual_rank from candidates c "
            "join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id "
            "where c.id in (select value from json_each(?))", [json.dumps([g["id"] for g in groups.values()])])}
        page = []
        for text in first:
            g = groups[text]
            page.append({**rows[g["id"]], "relevance": None, "test_score": g["best_test"],
                         "rerank_score": g["best_rerank"], "group_count": g["n"]})
        return page

    def _group_stats(self, frm: str, where: str, args: list[Any], texts: list[str],
                     order: str) -> dict[str, dict[str, Any]]:
        """Each text's group among the matching candidates: its best member (``id``), size, best dev score,
        best latest test and rerank scores, the key a rerank sort uses and the best manual rank."""
        if not texts:
            return {}
        sql = _group_stats_sql(frm, where, order)
        groups = {}
        for r in self._query(sql, [*args, json.dumps(texts)]):
            key = r["best_rerank"] if r["best_rerank"] is not None else r["best_test"]
            groups[r["instruction"]] = {**r, "best_key": key}
        return groups

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


    # -- sweeps -------------------------------------------------------------------------------------------
    def create_sweep(self, spec: dict[str, Any], cells: Sequence[dict[str, Any]], *, backend: str,
                     workers: int) -> int:
        """Record a sweep and its cells (task, method, seed, model) in one transaction: a sweep whose cells
        are half-written never exists, so ``--resume`` always finds the whole grid."""
        with self.transaction():
            sid = self._insert("sweeps", {"spec_json": json.dumps(spec), "status": "created", "backend": backend,
                                          "workers": workers, "created_at": now(), "seconds": 0.0})
            self._insert_many("sweep_cells", [
                {"sweep_id": sid, "position": i, "task": c["task"], "method": c["method"], "seed": c["seed"],
                 "model": c.get("model"), "run_id": None, "status": "pending", "attempts": 0, "error": None}
                for i, c in enumerate(cells)
            ])
            return sid

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        rows = self._query("select * from sweeps where id = ?", [sweep_id])
        if not rows:
            raise StoreError(f"no sweep with id {sweep_id} in {self.path}", "list sweeps with `iz sweep --list`")
        return _decoded(rows[0], "spec")

    def sweeps(self, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first, each with its cell counts by status (for lists: one query, not one per sweep)."""
        rows = self._query(
            "select s.*, count(c.id) as cells, "
            "sum(c.status = 'finished') as cells_finished, sum(c.status = 'failed') as cells_failed "
            f"from sweeps s left join sweep_cells c on c.sweep_id = s.id group by s.id order by s.id desc "
            f"limit {int(limit)}")
        return [_decoded(r, "spec") for r in rows]

    def update_sweep(self, sweep_id: int, **fields: Any) -> None:
        with self.transaction():
            self._update("sweeps", sweep_id, fields)

    def sweep_cells(self, sweep_id: int) -> list[dict[str, Any]]:
        """A sweep's cells in grid order, with their run's status, scores, counts and best instruction."""
        return self._query(
            "select c.*, r.status as run_status, r.best_dev_score as dev_score, r.test_score, r.evaluations, "
            "r.evaluations_saved, r.calls, r.calls_saved, r.seconds, r.best_instruction, r.best_candidate_id "
            "from sweep_cells c left join runs r on r.id = c.run_id where c.sweep_id = ? order by c.position",
            [sweep_id])

    def update_cell(self, cell_id: int, **fields: Any) -> None:
        with self.transaction():
            self._update("sweep_cells", cell_id, fields)

    # -- moving a run between stores (sweep workers) -----------------------------------------------------
    def export_run_rows(self, run_id: int) -> dict[str, list[dict[str, Any]]]:
        """The raw rows a run's execution reads (the run, its candidates, their test scores), as stored.

        A sweep worker loads them into its private store and continues the run there; every table keeps its
        ids, so what the worker sends back names the same run and candidates."""
        return {
            "runs": self._query("select * from runs where id = ?", [run_id]),
            "candidates": self._query("select * from candidates where run_id = ? order by id", [run_id]),
            "scores": self._query("select s.* from scores s join candidates c on c.id = s.candidate_id "
                                  "where c.run_id = ? order by s.id", [run_id]),
        }

    def import_run_rows(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Replace this store's runs by the one in ``rows`` (from :meth:`export_run_rows`), ids kept.

        Only for a sweep worker's private store: it holds one run at a time, and its cache stays."""
        with self.transaction():
            for table in ("outputs", "scores", "marks", "candidates", "runs"):
                self.db.execute(f"delete from [{table}]")
            for table in ("runs", "candidates", "scores"):
                for row in rows.get(table, []):
                    self._insert(table, row)

#: The latest score of a kind (test, rerank) of candidate ``c``; idx_scores_candidate_kind (m003) seeks it directly.
_LATEST = "(select s.score from scores s where s.candidate_id = c.id and s.kind = '{}' order by s.id desc limit 1)"
_FROM = "from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id"


def _search_sql(where: str, args: list[Any], joins: str, rank: str, order: str,
                limit: int) -> tuple[str, list[Any]]:
    """The search's SQL in two steps, so that it costs per row shown, not per row matched (100,000 candidates:
    bench/history_scale.py).

    1. ``page`` picks the ids of the page on narrow rows (the id and the sort keys). Sorting by dev score walks
       idx_candidates_dev_score (m003) and stops at the limit. A sort by rerank/test score or by manual rank puts
       first the few candidates that have such a score or rank (sorted by it), then the others by dev score —
       the order of sorting every row by ``coalesce(key, -1)`` (scores are >= 0) or ``coalesce(rank, 1e9)``,
       without computing the key of every row.
    2. Only the page's rows are read in full, with their latest test and rerank scores.
    """
    test, rerank = _LATEST.format("test"), _LATEST.format("rerank")
    frm = _FROM + joins

    def two_parts(key: str, key_order: str, has_key: str) -> str:
        return (f"select * from (select c.id as pid, 0 as grp, {key} as k, {rank} as rel {frm} where {where} "
                f"and {has_key} order by k {key_order}, c.dev_score desc, c.id limit {limit}) union all "
                f"select * from (select c.id, 1, null, {rank} {frm} where {where} and not ({has_key}) "
                f"order by c.dev_score desc, c.id limit {limit})")

    if order == "rerank":
        scored = "c.id in (select candidate_id from scores where kind in ('test', 'rerank') and score is not null)"
        page = two_parts(f"coalesce({rerank}, {test})", "desc", scored)
        outer, args = "page.grp, page.k desc, c.dev_score desc, c.id", args + args
    elif order == "rank":
        page = two_parts("m.manual_rank", "", "m.manual_rank is not null")
        outer, args = "page.grp, page.k, c.dev_score desc, c.id", args + args
    else:
        sort = {"score": "c.dev_score desc, c.id", "newest": "c.id desc"}.get(order)
        if sort is None:  # relevance (and anything unknown): bm25 first when there is a query
            sort = f"{rank}, c.dev_score desc, c.id" if rank != "null" else "c.dev_score desc, c.id"
        page = f"select c.id as pid, 0 as grp, null as k, {rank} as rel {frm} where {where} order by {sort} limit {limit}"
        outer = sort.replace(rank, "page.rel") if rank != "null" else sort
    sql = (f"with page as ({page}) select c.*, r.task, r.method, m.star, m.note, m.manual_rank, "
           f"page.rel as relevance, {test} as test_score, {rerank} as rerank_score "
           f"from page join candidates c on c.id = page.pid join runs r on r.id = c.run_id "
           f"left join marks m on m.candidate_id = c.id order by {outer} limit {limit}")
    return sql, args


#: Whether candidate ``c`` has a score of a kind (test, rerank): a seek in idx_scores_candidate_kind's list.
_HAS_SCORE = "c.id in (select candidate_id from scores where kind = '{}')"

#: A group's best member (highest dev score, then lowest id: the original of in-run repeats), found in the same pass
#: as the GROUP BY: (dev score to 1e-6, then 2**32 - 1 - id) packed in one integer, whose max() is the best; its low
#: 32 bits give the id back.
_BEST_MEMBER = (f"{0xFFFFFFFF} - (max((cast(round(c.dev_score * 1e6) as integer) << 32) + {0xFFFFFFFF} - c.id) "
                f"& {0xFFFFFFFF})")


def _group_from(where: str, order: str) -> str:
    """The FROM of a grouped page's walk and groups: runs and marks joined only when a filter or the order reads
    them (every candidate has its run: a foreign key), so that the groups can be read from idx_candidates_group
    alone. With the starred filter the few marked candidates are read first (CROSS JOIN fixes that order): walking
    every candidate for the one in a hundred with a star took longer than grouping them all."""
    needs_runs = re.search(r"\br\.", where) is not None
    runs = " join runs r on r.id = c.run_id" if needs_runs else ""
    if "m.star" in where:
        return f"from marks m cross join candidates c on c.id = m.candidate_id{runs}"
    marks = " left join marks m on m.candidate_id = c.id" if order == "rank" or re.search(r"\bm\.", where) else ""
    return f"from candidates c{runs}{marks}"


def _walk_sql(frm: str, where: str, order: str) -> str:
    """The texts of the matching candidates in the order of a grouped page's walk (``History._grouped_page``):
    by id (newest first) or by dev score (desc), then id — both an index's order, so no sort."""
    walk = "c.id desc" if order == "newest" else "c.dev_score desc, c.id"
    return f"select c.instruction {frm} where {where} order by {walk}"


def _group_stats_sql(frm: str, where: str, order: str) -> str:
    """The groups of the texts in a JSON list (the last parameter), among the matching candidates: one seek
    each in idx_candidates_group (m009)."""
    test, rerank = _LATEST.format("test"), _LATEST.format("rerank")
    manual = "m.manual_rank" if order == "rank" else "null"
    return (f"select c.instruction, {_BEST_MEMBER} as id, count(*) as n, max(c.dev_score) as best_dev, "
            f"max(case when {_HAS_SCORE.format('test')} then {test} end) as best_test, "
            f"max(case when {_HAS_SCORE.format('rerank')} then {rerank} end) as best_rerank, "
            f"min({manual}) as best_rank {frm} where {where} "
            f"and c.instruction in (select value from json_each(?)) group by c.instruction")


def _group_sql(where: str, args: list[Any], joins: str, rank: str, order: str,
               limit: int) -> tuple[str, list[Any]]:
    """The SQL of a grouped search *with a query* (``History.search(group=True)``; without one,
    ``History._grouped_page`` walks the candidates instead).

    One GROUP BY over the matching rows gives each text its count, its best scores and its best member (highest
    dev score, then the lowest id: the original of in-run repeats); the page is the best members, sorted by
    their group's keys, and only they are read in full. It costs a sort of the matching rows by text, cheap for
    a search's matches (a few thousand of 100,000 candidates: ~50 ms, bench/history_scale.py) but not for all of
    them, which is why a page without a query walks instead. A latest test or rerank score is looked up only for
    the candidates with one.
    """
    test, rerank = _LATEST.format("test"), _LATEST.format("rerank")
    # ``limit -1`` keeps SQLite from merging this into the GROUP BY, where bm25() cannot be called.
    # Only the columns the groups need are carried through the sort (the manual rank only to sort by it).
    manual = "m.manual_rank" if order == "rank" else "null"
    hits = (f"select c.id, c.instruction, c.dev_score, {rank} as rel, {manual} as manual_rank, "
            f"case when {_HAS_SCORE.format('test')} then {test} end as t, "
            f"case when {_HAS_SCORE.format('rerank')} then {rerank} end as rr {_FROM}{joins} where {where} limit -1")
    groups = (f"select {_BEST_MEMBER} as id, count(*) as n, max(dev_score) as best_dev, max(t) as best_test, "
              f"max(rr) as best_rerank, min(rel) as rel, max(id) as newest, min(manual_rank) as best_rank "
              f"from ({hits}) c group by instruction")
    by_dev = "g.best_dev desc, g.id"
    sort = {
        "score": by_dev,
        "newest": "g.newest desc",
        "rerank": f"coalesce(g.best_rerank, g.best_test) is null, coalesce(g.best_rerank, g.best_test) desc, {by_dev}",
        "rank": f"g.best_rank is null, g.best_rank, {by_dev}",
    }.get(order, f"g.rel, {by_dev}" if rank != "null" else by_dev)
    sql = (f"with page as (select * from ({groups}) g order by {sort} limit {limit}) "
           f"select c.*, r.task, r.method, m.star, m.note, m.manual_rank, g.rel as relevance, "
           f"g.best_test as test_score, g.best_rerank as rerank_score, g.n as group_count "
           f"from page g join candidates c on c.id = g.id join runs r on r.id = c.run_id "
           f"left join marks m on m.candidate_id = c.id order by {sort} limit {limit}")
    return sql, args


def fts_query(text: str) -> str:
    """Turn what a person types into a safe FTS5 query: each word quoted, a trailing ``*`` kept as a prefix."""
    if text.count('"') >= 2:
        return text
    terms = []
    for word in text.split():
        star = word.endswith("*")
        word = word.rstrip("*").replace('"', "")
        if word:
            terms.append(f'"{word}"' + ("*" if star else ""))
    return " ".join(terms) or '""'
