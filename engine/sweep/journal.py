"""A worker's private store that reports every write, and the driver's replay of those writes.

Why a journal rather than a shared database: a sweep's workers may run on other machines, and SQLite is a
single-writer file on the user's disk. So a worker runs the unchanged engine core against a private scratch
store (:class:`JournalHistory`) holding just the run it works on, and every committed write — a candidate, a
score with its outputs, the run's totals, a black-box answer for the cache — is sent to the driver as one
*operation group* (a transaction's writes, sent only when it commits). The driver replays each group through
the same store API in one transaction (:class:`Replayer`), so the user's history holds exactly what a local run
would have written, as it happens.

Ids: the driver exports the run with its ids (``History.export_run_rows``) and the worker imports them as they
are, so the run and its existing candidates have the same ids on both sides. A candidate the worker adds gets a
scratch id above all imported ones; the driver maps it to the id its own insert returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from engine.store.history import History

#: One write: (method name, positional args, keyword args, what the method returned on the worker).
Op = tuple[str, tuple[Any, ...], dict[str, Any], Any]


class RemoteCache(Protocol):
    """The sweep's shared response cache, as a worker sees it (the driver's history, and answers in flight)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, row: dict[str, Any]) -> None: ...


class JournalHistory(History):
    """A :class:`History` on a private file that hands every committed write to ``sink``.

    Cache look-ups try the private file, then ``remote`` (the sweep's shared cache), so an answer paid for by
    any cell of the sweep, or by any earlier run in the user's history, is not paid for again."""

    def __init__(self, path: Path, sink: Callable[[list[Op]], None], remote: RemoteCache | None = None) -> None:
        self._depth = 0
        self._pending: list[Op] = []
        super().__init__(path)
        self.sink = sink
        self.remote = remote

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                with super().transaction():
                    yield
            except BaseException:
                if outer:
                    self._pending.clear()  # rolled back here, so never replayed there
                raise
            finally:
                self._depth -= 1
            if outer and self._pending:
                ops, self._pending = self._pending, []
                self.sink(ops)

    def _journal(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any = None) -> None:
        self._pending.append((name, args, kwargs, result))

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.transaction():
            super().update_run(run_id, **fields)
            self._journal("update_run", (run_id,), fields)

    def add_candidate(self, *args: Any, **kwargs: Any) -> int:
        with self.transaction():
            cid = super().add_candidate(*args, **kwargs)
            self._journal("add_candidate", args, kwargs, cid)
            return cid

    def record_score(self, candidate_id: int, **kwargs: Any) -> None:
        with self.transaction():
            super().record_score(candidate_id, **kwargs)
            self._journal("record_score", (candidate_id,), kwargs)

    def add_score(self, candidate_id: int, **kwargs: Any) -> int:
        with self.transaction():
            sid = super().add_score(candidate_id, **kwargs)
            self._journal("add_score", (candidate_id,), kwargs, sid)
            return sid

    def cache_put(self, row: dict[str, Any]) -> None:
        with self.transaction():
            super().cache_put(row)
            self._journal("cache_put", (row,), {})
        if self.remote is not None:
            self.remote.put(row)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        row = super().cache_get(key)
        if row is None and self.remote is not None:
            row = self.remote.get(key)
            if row is not None:
                super().cache_put({k: v for k, v in row.items() if k not in ("created_at",)})
        return row


class Replayer:
    """Applies one run's operation groups from a worker to the user's history, mapping new candidate ids."""

    def __init__(self, history: History, run_id: int) -> None:
        self.history = history
        self.run_id = run_id
        self.ids: dict[int, int] = {}  # the worker's id of a candidate it added -> the id here

    def cid(self, worker_id: int | None) -> int | None:
        return None if worker_id is None else self.ids.get(worker_id, worker_id)

    def _totals(self, fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("best_candidate_id") is not None:
            fields = {**fields, "best_candidate_id": self.cid(fields["best_candidate_id"])}
        return fields

    def apply(self, ops: list[Op]) -> None:
        h = self.history
        with h.transaction():
            for name, args, kwargs, result in ops:
                if name == "update_run":
                    if args[0] != self.run_id:
                        raise ValueError(f"a worker wrote run {args[0]} while working on run {self.run_id}")
                    h.update_run(self.run_id, **self._totals(kwargs))
                elif name == "add_candidate":
                    if args[0] != self.run_id:
                        raise ValueError(f"a worker added to run {args[0]} while working on run {self.run_id}")
                    self.ids[result] = h.add_candidate(*args, **kwargs)
                elif name == "record_score":
                    kw = dict(kwargs)
                    kw["duplicate_of"] = self.cid(kw.get("duplicate_of"))
                    if kw.get("run_totals"):
                        kw["run_totals"] = self._totals(kw["run_totals"])
                    h.record_score(self.cid(args[0]), **kw)  # type: ignore[arg-type]
                elif name == "add_score":
                    h.add_score(self.cid(args[0]), **kwargs)  # type: ignore[arg-type]
                elif name == "cache_put":
                    h.cache_put(dict(args[0]))
                else:
                    raise ValueError(f"unknown journal operation {name!r}")
