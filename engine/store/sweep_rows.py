"""The store's sweeps (a grid of runs and its cells) and the moving of one run between stores (a sweep worker's
private store and the driver's). A mixin of :class:`engine.store.history.History`, which gives it the transaction
and the row helpers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import StoreError
from engine.store.rows import _decoded, now


class SweepRows:
    path: Path
    db: sqlite3.Connection

    if TYPE_CHECKING:  # History's, declared for the reader and the type checker only (no silent no-op stubs)
        def transaction(self) -> AbstractContextManager[None]: ...
        def _insert(self, table: str, row: dict[str, Any]) -> int: ...
        def _insert_many(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...
        def _update(self, table: str, row_id: int, fields: dict[str, Any]) -> None: ...
        def _query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

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
