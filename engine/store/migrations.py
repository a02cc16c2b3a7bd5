"""The history schema as numbered migrations (sqlite-utils' migration sets).

Each migration is a function named ``mNNN_what``; sqlite-utils records applied ones in ``_sqlite_migrations``
and applies the pending ones in order, each in its own transaction, when the store opens. A name recorded in the
database that this release does not know means a newer release wrote the file: the store refuses to touch it
rather than guess (see :func:`engine.store.history.open_history`).
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATION_SET = "instructzero"
migrations = Migrations(MIGRATION_SET)


@migrations()
def m001_initial(db: Database) -> None:
    """The first schema: runs, candidates, outputs, scores, the response cache and marks.

    Length: the first schema as it shipped, table by table; a migration is never edited once released.
    """
    db["runs"].create(
        {
            "id": int,
            "task": str,
            "method": str,
            "settings": str,  # JSON: the run's full settings (no secrets: profiles hold only key NAMES)
            "endpoint": str,  # JSON: the endpoint profile name, base_url, model, api
            "status": str,  # created | running | finished | failed | cancelled | interrupted
            "stop_reason": str,
            "error": str,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "best_candidate_id": int,
            "best_instruction": str,
            "best_dev_score": float,
            "test_score": float,
            "evaluations": int,
            "calls": int,
            "calls_saved": int,
            "evaluations_saved": int,
            "prompt_tokens": int,
            "completion_tokens": int,
            "seconds": float,
        },
        pk="id",
    )
    db["runs"].create_index(["task"])
    db["candidates"].create(
        {
            "id": int,
            "run_id": int,
            "iteration": int,  # 0 = initial design; 1.. = BO iterations; -1 = a rerank-only entry
            "position": int,  # order within the run (resume replays by it)
            "z": str,  # JSON list: the soft prompt (null for ape/manual)
            "instruction": str,
            "status": str,  # proposed | scored | failed
            "dev_score": float,
            "scores": str,  # JSON list: per-example dev scores
            "duplicate_of": int,  # an earlier candidate with the same instruction: its score is reused
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_s": float,
            "cache_hit": int,  # 1 when no black-box call was paid (cache or dedup)
            "calls": int,
            "calls_saved": int,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["candidates"].create_index(["run_id", "position"], unique=True)
    db["candidates"].create_index(["instruction"])
    db["outputs"].create(
        {
            "id": int,
            "candidate_id": int,
            "split": str,  # dev | test | rerank
            "score_id": int,  # the scores row this output belongs to (test / rerank)
            "example_index": int,
            "input": str,
            "answers": str,  # JSON list
            "output": str,
            "score": float,
            "cache_hit": int,
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_s": float,
        },
        pk="id",
        foreign_keys=[("candidate_id", "candidates", "id")],
    )
    db["outputs"].create_index(["candidate_id", "split"])
    db["scores"].create(
        {
            "id": int,
            "candidate_id": int,
            "kind": str,  # test | rerank
            "split": str,  # dev | test
            "n_examples": int,
            "endpoint": str,  # JSON, as in runs.endpoint
            "metric": str,
            "score": float,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("candidate_id", "candidates", "id")],
    )
    db["scores"].create_index(["candidate_id"])
    db["cache"].create(
        {
            "key": str,  # sha256 of endpoint + model + parameters + prompt
            "base_url": str,
            "model": str,
            "params": str,
            "prompt_sha256": str,
            "response": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_s": float,
            "created_at": str,
        },
        pk="key",
    )
    db["marks"].create(
        {"candidate_id": int, "star": int, "note": str, "manual_rank": int, "updated_at": str},
        pk="candidate_id",
        foreign_keys=[("candidate_id", "candidates", "id")],
    )
    db["candidates"].enable_fts(["instruction"], create_triggers=True, tokenize="porter")


#: Columns that hold JSON text, renamed ``*_json`` by m002 so a reader of the file (or of a SQL query) knows to
#: decode them. The store's API still returns them decoded under their short names.
JSON_COLUMNS = {
    "runs": ("settings", "endpoint"),
    "candidates": ("z", "scores"),
    "outputs": ("answers",),
    "scores": ("endpoint",),
    "cache": ("params",),
}


@migrations()
def m002_json_columns(db: Database) -> None:
    # ALTER TABLE ... RENAME COLUMN keeps the rows, the indexes and the full-text triggers (SQLite >= 3.25).
    for table, columns in JSON_COLUMNS.items():
        for col in columns:
            db.execute(f"alter table [{table}] rename column [{col}] to [{col}_json]")


@migrations()
def m003_search_indexes(db: Database) -> None:
    # Indexes only, chosen on a history of 100,000 candidates (bench/history_scale.py; figures in BENCHMARKS.md).
    # The history's default page (best dev score first, also the second part of a rerank or manual-rank sort)
    # walks this index and stops at the page's limit instead of sorting every candidate.
    db.execute("create index if not exists idx_candidates_dev_score on candidates(dev_score desc)")
    # Every listing shows a candidate's latest test and rerank score: one seek each. It starts with candidate_id,
    # so it also serves the foreign key, and the index on candidate_id alone goes.
    db.execute("create index if not exists idx_scores_candidate_kind on scores(candidate_id, kind, id)")
    db.execute("drop index if exists idx_scores_candidate_id")


@migrations()
def m004_run_provenance(db: Database) -> None:
    # JSON: the package version, seed, generator and black box (names and model-file hashes) of each run.
    db["runs"].add_column("provenance_json", str)


def known_names() -> list[str]:
    return [m.name for m in migrations._migrations]


@migrations()
def m005_paid_tokens(db: Database) -> None:
    # The tokens of calls that went over the network (a cached or deduplicated answer adds 0): what an endpoint
    # bills, priced by the profile's price_input/price_output. Rows from before stay NULL (counted as 0).
    for table in ("runs", "candidates"):
        db[table].add_column("paid_prompt_tokens", int)
        db[table].add_column("paid_completion_tokens", int)


@migrations()
def m006_sweeps(db: Database) -> None:
    # A sweep is a grid of runs (task x method x seed x model) executed by workers; the driver is the one writer,
    # so these rows and the runs they point at are written by one process, like any other run's.
    db["sweeps"].create(
        {
            "id": int,
            "spec_json": str,  # JSON: engine.sweep.spec.SweepSpec (no secrets: profiles hold only key NAMES)
            "status": str,  # created | running | finished | failed | interrupted
            "backend": str,  # ray | local
            "workers": int,
            "error": str,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "seconds": float,
        },
        pk="id",
    )
    db["sweep_cells"].create(
        {
            "id": int,
            "sweep_id": int,
            "position": int,
            "task": str,
            "method": str,  # a method or one of the spec's variants
            "seed": int,
            "model": str,  # the black-box model of the cell; NULL = the endpoint's own
            "run_id": int,
            "status": str,  # pending | running | finished | failed
            "attempts": int,
            "error": str,
        },
        pk="id",
        foreign_keys=[("sweep_id", "sweeps", "id"), ("run_id", "runs", "id")],
    )
    db["sweep_cells"].create_index(["sweep_id", "position"], unique=True)
    db["sweep_cells"].create_index(["run_id"])


@migrations()
def m007_candidate_decoding(db: Database) -> None:
    # How a soft-prompt candidate's text was decoded: "greedy" (the paper), or "sampled" (a second try because its
    # greedy text was one the run already had; engine/resample.py). NULL for APE, manual and older rows.
    db["candidates"].add_column("decoding", str)


@migrations()
def m008_candidate_stopped_early(db: Database) -> None:
    # 1 when racing stopped scoring the candidate before its last dev example (it could no longer beat the run's
    # best): its dev_score is the mean of the examples it answered, and scores_json holds only those.
    db["candidates"].add_column("stopped_early", int)


@migrations()
def m009_group_index(db: Database) -> None:
    # The history's grouped view (`g`: each instruction once) groups the scored originals by their text. This
    # index holds exactly those rows, in text order, with what a group needs, so a page's groups are one seek each
    # (History._grouped_page; 100,000 candidates: 290 -> ~30 ms, bench/history_scale.py).
    db.execute("create index if not exists idx_candidates_group on candidates(instruction, dev_score, run_id) "
               "where status = 'scored' and duplicate_of is null")
