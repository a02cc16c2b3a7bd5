"""The local history: every run, candidate, output, cached response and user mark, in one SQLite file.

Why SQLite through sqlite-utils: one file the user can copy or open with any SQLite tool, transactions for
"all or nothing" writes, WAL so the TUI can read while the engine writes, and FTS5 (ranked by bm25) for search.
The engine is the only writer of runs, candidates, outputs and cache rows; front ends write only marks.
Nothing here ever stores an API key: endpoint descriptions come from :meth:`EndpointProfile.public`.
"""

from __future__ import annotations

import datetime as _dt
import json
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


def open_history(path: Path | str | None = None) -> History:
    """Open (creating if needed) the history database and bring its schema up to date."""
    return History(Path(path) if path else paths.history_db())


class History:
    """A handle on the history database. Safe to share between threads of one process (writes are locked)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self.db = Database(conn)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA busy_timeout = 30000")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the history database {path}: {exc}",
                "check the file is a SQLite database and the disk has room, or set IZ_HOME to another folder",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot create the history folder {path.parent}: {exc.strerror}",
                "check permissions and free space, or set IZ_HOME to a writable folder",
            ) from None

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
        with self._lock:
            migrations.apply(self.db)

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One writer at a time, all or nothing. A full disk rolls back and says so."""
        with self._lock:
            try:
                with self.db.atomic():
                    yield
            except sqlite3.OperationalError as exc:
                if "full" in str(exc).lower():
                    raise StoreError(
                        f"the disk holding {self.path} is full; the last change was not saved (earlier ones are)",
                        "free some space, then resume the run with `iz run --resume RUN_ID`",
                    ) from None
                raise

    # Plain SQL for the writes a run makes per candidate and per example (sqlite-utils' insert/update read the
    # table's schema on every call: ~7 ms a scored candidate, against ~0.5 ms here; bench/history_scale.py).
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
                "seconds": 0.0,
            }
            return int(self.db["runs"].insert(row).last_pk)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.transaction():
            self.db["runs"].update(run_id, fields)

    def run(self, run_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
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
        return [self._run_row(r) for r in self.db.query(sql, args)]

    @staticmethod
    def _run_row(row: dict[str, Any]) -> dict[str, Any]:
        row = _decoded(row, "settings", "endpoint", "provenance")
        row["settings"] = row["settings"] or {}
        row["endpoint"] = row["endpoint"] or {}
        return row

    # -- candidates ---------------------------------------------------------------------------------------
    def add_candidate(
        self, run_id: int, iteration: int, position: int, z: Sequence[float] | None, instruction: str
    ) -> int:
        with self.transaction():
            return self._insert(
                "candidates",
                {
                    "run_id": run_id,
                    "iteration": iteration,
                    "position": position,
                    "z_json": _dumps(list(z) if z is not None else None),
                    "instruction": instruction,
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
    ) -> None:
        """Store a candidate's score, its per-example outputs, what it cost and the run's running totals in ONE
        transaction, so a crash leaves either all of it or none (resume then re-scores only what is missing)."""
        with self.transaction():
            self._update(
                "candidates",
                candidate_id,
                {
                    "status": "scored",
                    "dev_score": dev_score,
                    "scores_json": json.dumps(list(scores)),
                    "duplicate_of": duplicate_of,
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
        rows = list(self.db.query(self._cand_sql("c.id = ?"), [candidate_id]))
        if not rows:
            raise StoreError(f"no candidate with id {candidate_id}", "list a run's candidates with `iz show RUN_ID`")
        return self._cand_row(rows[0])

    def candidates(self, run_id: int, status: str | None = None) -> list[dict[str, Any]]:
        where, args = "c.run_id = ?", [run_id]
        if status:
            where += " and c.status = ?"
            args.append(status)
        return [self._cand_row(r) for r in self.db.query(self._cand_sql(where) + " order by c.position", args)]

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
        return [_decoded(r, "answers") for r in self.db.query(sql + " order by id", args)]

    def scores(self, candidate_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("select * from scores where candidate_id = ? order by id", [candidate_id])
        return [_decoded(r, "endpoint") for r in rows]

    def scored_instruction(self, run_id: int, instruction: str) -> dict[str, Any] | None:
        """The earliest scored candidate of a run with this exact instruction (the dedup look-up)."""
        rows = list(
            self.db.query(
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
    ) -> list[dict[str, Any]]:
        """Candidates matching the filters. With a query, full-text search ranked by bm25 (best first).

        Repeats of an instruction within a run (``duplicate_of`` set) are left out unless ``duplicates``: they
        carry no new information, only the soft prompt that produced the same text again.
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
        orders = {
            "relevance": f"{rank}, c.dev_score desc, c.id" if rank != "null" else "c.dev_score desc, c.id",
            "score": "c.dev_score desc, c.id",
            # Spelled out: inside an expression SQLite would resolve test_score to runs.test_score, not the alias.
            "rerank": "coalesce((select s.score from scores s where s.candidate_id = c.id and s.kind = 'rerank' "
                      "order by s.id desc limit 1), (select s.score from scores s where s.candidate_id = c.id "
                      "and s.kind = 'test' order by s.id desc limit 1), -1) desc, c.dev_score desc, c.id",
            "newest": "c.id desc",
            "rank": "coalesce(m.manual_rank, 1e9), c.dev_score desc",
        }
        sql = (
            "select c.*, r.task, r.method, m.star, m.note, m.manual_rank, "
            f"{rank} as relevance, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'test' "
            " order by s.id desc limit 1) as test_score, "
            "(select s.score from scores s where s.candidate_id = c.id and s.kind = 'rerank' "
            " order by s.id desc limit 1) as rerank_score "
            f"from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id{joins} "
            f"where {' and '.join(where)} order by {orders.get(order, orders['relevance'])} limit {int(limit)}"
        )
        try:
            return [self._cand_row(r) for r in self.db.query(sql, args)]
        except sqlite3.OperationalError as exc:
            raise StoreError(f"bad search {query!r}: {exc}", "use plain words; quote a phrase with \"\"") from None

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
        rows = list(self.db.query("select * from cache where key = ?", [key]))
        return _decoded(rows[0], "params") if rows else None

    def cache_put(self, row: dict[str, Any]) -> None:
        with self.transaction():
            row = dict(row)
            row["params_json"] = json.dumps(row.pop("params"), ensure_ascii=False)
            self.db["cache"].upsert({**row, "created_at": now()}, pk="key")


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
