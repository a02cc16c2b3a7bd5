"""The history store on a real SQLite file: migrations, schema, WAL, newer-schema refusal, FTS, marks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import SchemaTooNewError, StoreError
from engine.store import open_history
from engine.store.migrations import known_names
from engine.usage import Usage


def _run_with_candidates(h, instructions: list[str], task: str = "larger_animal", method: str = "instructzero"):
    run = h.create_run(task, method, {"seed": 0}, {"name": "embedded", "model": "m"})
    ids = []
    for i, text in enumerate(instructions):
        cid = h.add_candidate(run, 0, i, [0.1 * i, -0.2], text)
        out = [{"input": "cat, whale", "answers": ["whale"], "output": "whale", "score": 1.0, "cache_hit": False,
                "prompt_tokens": 10, "completion_tokens": 2, "latency_s": 0.1}]
        h.record_score(cid, dev_score=0.1 * (i + 1), scores=[0.1 * (i + 1)], outputs=out, usage=Usage.of_answers(out))
        ids.append(cid)
    return run, ids


def test_fresh_database_applies_all_migrations_and_uses_wal(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    assert h.db.journal_mode == "wal"
    assert h.schema_version == len(known_names())
    for table in ("runs", "candidates", "outputs", "scores", "cache", "marks", "candidates_fts"):
        assert h.db[table].exists(), table
    applied = [r["name"] for r in h.db.query("select name from _sqlite_migrations order by id")]
    assert applied == known_names()
    h.close()
    # Re-opening applies nothing twice.
    h2 = open_history(tmp_path / "h.db")
    assert h2.db.execute("select count(*) from _sqlite_migrations").fetchone()[0] == len(known_names())


def test_schema_has_the_columns_the_engine_relies_on(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    cols = {c.name for c in h.db["candidates"].columns}
    assert {"run_id", "iteration", "z_json", "instruction", "dev_score", "scores_json", "prompt_tokens", "latency_s",
            "cache_hit"} <= cols
    assert {"task", "method", "settings_json", "endpoint_json", "status", "created_at", "best_candidate_id",
            "test_score"} <= {c.name for c in h.db["runs"].columns}
    assert {"key", "base_url", "model", "params_json", "prompt_sha256", "response"} <= {
        c.name for c in h.db["cache"].columns}
    # Every column holding JSON says so in its name.
    for table in ("runs", "candidates", "outputs", "scores", "cache"):
        for c in h.db[table].columns:
            if c.name in ("settings", "endpoint", "z", "scores", "answers", "params"):
                raise AssertionError(f"{table}.{c.name} holds JSON but is not named *_json")


def test_json_column_migration_keeps_old_rows_and_search(tmp_path: Path) -> None:
    """A history written before m002 (JSON columns under their short names) opens with every row readable."""
    from sqlite_utils import Database

    from engine.store.migrations import migrations

    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m002_json_columns")
    run = db["runs"].insert({"task": "t", "method": "instructzero", "settings": '{"seed": 3, "instructions": []}',
                             "endpoint": '{"name": "embedded", "model": "m"}', "status": "finished"}).last_pk
    cid = db["candidates"].insert({"run_id": run, "iteration": 0, "position": 0, "z": "[0.5, -0.5]",
                                   "instruction": "Name the bigger animal.", "status": "scored", "dev_score": 1.0,
                                   "scores": "[1.0]"}).last_pk
    db["outputs"].insert({"candidate_id": cid, "split": "dev", "example_index": 0, "input": "cat, whale",
                          "answers": '["whale"]', "output": "whale", "score": 1.0, "cache_hit": 0})
    db["scores"].insert({"candidate_id": cid, "kind": "test", "split": "test", "n_examples": 1,
                         "endpoint": '{"name": "embedded"}', "metric": "exact", "score": 1.0})
    db["cache"].insert({"key": "k", "base_url": "u", "model": "m", "params": '{"temperature": 0}',
                        "prompt_sha256": "p", "response": "whale"})
    db.close()
    h = open_history(path)
    assert h.schema_version == len(known_names())
    assert h.run(run)["settings"] == {"seed": 3, "instructions": []} and h.run(run)["endpoint"]["model"] == "m"
    c = h.candidate(cid)
    assert c["z"] == [0.5, -0.5] and c["scores"] == [1.0] and "z_json" not in c
    assert h.outputs(cid)[0]["answers"] == ["whale"]
    assert h.scores(cid)[0]["endpoint"] == {"name": "embedded"}
    assert h.cache_get("k")["params"] == {"temperature": 0}
    assert [r["id"] for r in h.search("bigger")] == [cid], "full-text search survives the rename"
    assert {"star", "note", "manual_rank"} <= {c.name for c in h.db["marks"].columns}


def test_database_from_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    open_history(path).close()
    conn = sqlite3.connect(path)
    conn.execute("insert into _sqlite_migrations (migration_set, name, applied_at) values "
                 "('instructzero', 'm999_from_the_future', 'x')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError) as err:
        open_history(path)
    assert "newer release" in str(err.value) and "m999_from_the_future" in str(err.value)
    assert "upgrade" in err.value.fix
    assert path.read_bytes() == before


def test_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as err:
        open_history(path)
    assert str(path) in str(err.value)


def test_full_text_search_ranks_by_bm25(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    _run_with_candidates(h, [
        "Write the larger of the two animals.",
        "Name the animal. Then name the animal again, the larger animal of the animals.",
        "Translate the word into French.",
    ])
    hits = h.search("animal")
    texts = [r["instruction"] for r in hits]
    assert "Translate the word into French." not in texts
    assert len(texts) == 2
    # bm25: the instruction that says "animal" four times ranks above the one that says it once.
    assert texts[0].startswith("Name the animal")
    assert hits[0]["relevance"] <= hits[1]["relevance"]
    # Porter stemming: "animals" finds "animal"; prefix search works; odd punctuation is not an error.
    assert len(h.search("animals")) == 2
    assert len(h.search("transl*")) == 1
    assert h.search('larger "') is not None


def test_search_filters_by_task_method_score_and_star(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    run_a, ids_a = _run_with_candidates(h, ["Say the bigger animal.", "Pick the larger animal."])
    run_b, ids_b = _run_with_candidates(h, ["Add the numbers."], task="sum", method="random")
    assert {r["id"] for r in h.search(task="sum")} == set(ids_b)
    assert {r["id"] for r in h.search(method="instructzero")} == set(ids_a)
    assert {r["id"] for r in h.search(run_id=run_a, min_score=0.15)} == {ids_a[1]}
    h.set_mark(ids_a[0], star=True, note="short and clear")
    starred = h.search(starred=True)
    assert [r["id"] for r in starred] == [ids_a[0]]
    assert starred[0]["note"] == "short and clear"
    h.set_mark(ids_a[0], star=False)
    assert h.search(starred=True) == []
    assert h.candidate(ids_a[0])["note"] == "short and clear"


def test_search_groups_identical_instructions_across_runs(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    # dev scores 0.1, 0.2, 0.3 by position: the second run's "Pick the larger animal." (0.3) beats the first's (0.2)
    _, ids_a = _run_with_candidates(h, ["Say the bigger animal.", "Pick the larger animal."])
    _, ids_b = _run_with_candidates(h, ["Name it.", "Say the bigger animal.", "Pick the larger animal."],
                                    task="sum", method="random")
    h.add_score(ids_a[0], kind="test", split="test", endpoint={}, metric="contains", score=0.9, outputs=[])
    rows = h.search(group=True)
    assert [(r["instruction"], r["group_count"], r["id"]) for r in rows] == [
        ("Pick the larger animal.", 2, ids_b[2]),
        ("Say the bigger animal.", 2, ids_b[1]),  # best dev 0.2 is run b's; the test score is the group's best
        ("Name it.", 1, ids_b[0]),
    ]
    assert rows[0]["dev_score"] == pytest.approx(0.3) and rows[1]["test_score"] == 0.9
    # The filters apply before grouping; a query keeps the bm25 order over the groups.
    assert [(r["id"], r["group_count"]) for r in h.search(group=True, task="larger_animal")] == [
        (ids_a[1], 1), (ids_a[0], 1)]
    hits = h.search("animal", group=True)
    assert {r["instruction"] for r in hits} == {"Pick the larger animal.", "Say the bigger animal."}
    assert all(r["relevance"] is not None and r["group_count"] == 2 for r in hits)
    assert [r["id"] for r in h.search(group=True, order="rerank")][0] == ids_b[1]  # the group with a test score


def test_record_score_is_one_transaction(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    run = h.create_run("t", "instructzero", {}, {})
    cid = h.add_candidate(run, 0, 0, None, "Do it.")
    bad_outputs = [{"input": "x", "answers": ["y"], "output": "y", "score": 1.0}, {"input": "x"}]  # 2nd is broken
    with pytest.raises(KeyError):
        h.record_score(cid, dev_score=1.0, scores=[1.0, 0.0], outputs=bad_outputs, usage=Usage(calls=2),
                       run_totals={"evaluations": 1})
    assert h.candidate(cid)["status"] == "proposed"
    assert h.outputs(cid) == []
    assert h.run(run)["evaluations"] == 0


def test_cache_round_trip_and_no_secret_columns(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    h.cache_put({"key": "k1", "base_url": "embedded:x.gguf", "model": "m", "params": "{}", "prompt_sha256": "p",
                 "response": "whale", "prompt_tokens": 3, "completion_tokens": 1, "latency_s": 0.2})
    assert h.cache_get("k1")["response"] == "whale"
    assert h.cache_get("missing") is None
    all_columns = " ".join(c.name for t in h.db.tables for c in t.columns).lower()
    assert "api_key" not in all_columns and "secret" not in all_columns
