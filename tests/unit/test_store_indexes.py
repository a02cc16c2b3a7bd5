"""The search indexes (migration m003) and the two-step search queries: same results, the planned index used.

Timings are not checked here (bench/history_scale.py measures them on 100,000 candidates); these tests pin what
makes them fast (the query plans) and that the faster queries return exactly what a plain sort of every row would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from engine.store import History, open_history
from engine.store.migrations import known_names, migrations
from engine.store.search import fts_query
from engine.usage import Usage

WORDS = ["write", "name", "give", "the", "larger", "animal", "opposite", "plural", "form", "of", "each", "word",
         "input", "first", "letter"]
ENDPOINT = {"name": "bench", "model": "m"}


def _indexes(h: History, table: str) -> set[str]:
    return {r[1] for r in h.db.execute(f"pragma index_list([{table}])").fetchall()}


def _fill(h: History, n_runs: int = 4, per_run: int = 25, seed: int = 0, pool: int = 0) -> list[int]:
    """Runs with repeats (duplicate_of), test and rerank scores on some candidates, stars and manual ranks.

    ``pool``: draw the texts from that many sentences, so that runs share instructions (for the grouped view)."""
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + "." for _ in range(pool)]
    ids: list[int] = []
    for r in range(n_runs):
        run = h.create_run("larger_animal" if r % 2 else "antonyms", "instructzero" if r % 3 else "random",
                           {"seed": r}, ENDPOINT)
        seen: dict[str, int] = {}
        for pos in range(per_run):
            text = (rng.choice(list(seen)) if seen and rng.random() < 0.2 else rng.choice(sentences) if sentences
                    else " ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + ".")
            cid = h.add_candidate(run, pos // 5, pos, [rng.random(), rng.random()], text)
            dup = seen.get(text)
            dev = round(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]), 2)  # ties on purpose: the id breaks them
            out = [] if dup else [{"input": "cat, whale", "answers": ["whale"], "output": "whale", "score": dev,
                                   "cache_hit": False}]
            h.record_score(cid, dev_score=dev, scores=[dev], outputs=out,
                           usage=Usage.reused(1) if dup else Usage.of_answers(out), duplicate_of=dup)
            seen.setdefault(text, cid)
            ids.append(cid)
            if dup is None and rng.random() < 0.15:
                h.add_score(cid, kind="test", split="test", endpoint=ENDPOINT, metric="contains",
                            score=round(rng.random(), 2), outputs=out)
            if dup is None and rng.random() < 0.1:
                for _ in range(rng.randint(1, 2)):  # the latest rerank score counts
                    h.add_score(cid, kind="rerank", split="test", endpoint=ENDPOINT, metric="contains",
                                score=round(rng.random(), 2), outputs=out)
            if rng.random() < 0.1:
                h.set_mark(cid, star=True)
            if rng.random() < 0.1:
                h.set_mark(cid, manual_rank=rng.randint(1, 5))
    return ids


def _plain_search(h: History, query: str | None = None, *, task: str | None = None, method: str | None = None,
                  min_score: float | None = None, starred: bool | None = None, order: str = "relevance",
                  limit: int = 500, duplicates: bool = False) -> list[tuple[Any, ...]]:
    """The definition of each order: every matching row sorted by its key (what search() did before m003)."""
    where, args = ["c.status = 'scored'"], []
    if not duplicates:
        where.append("c.duplicate_of is null")
    joins, rank = "", "null"
    if query:
        joins, rank = " join candidates_fts f on f.rowid = c.id", "bm25(candidates_fts)"
        where.append("candidates_fts match ?")
        args.append(fts_query(query))
    for cond, val in (("r.task = ?", task), ("r.method = ?", method), ("c.dev_score >= ?", min_score)):
        if val is not None:
            where.append(cond)
            args.append(val)
    if starred:
        where.append("coalesce(m.star, 0) = 1")
    latest = "(select s.score from scores s where s.candidate_id = c.id and s.kind = '{}' order by s.id desc limit 1)"
    test, rerank = latest.format("test"), latest.format("rerank")
    orders = {
        "relevance": f"{rank}, c.dev_score desc, c.id" if query else "c.dev_score desc, c.id",
        "score": "c.dev_score desc, c.id",
        "rerank": f"coalesce({rerank}, {test}, -1) desc, c.dev_score desc, c.id",
        "newest": "c.id desc",
        "rank": "coalesce(m.manual_rank, 1e9), c.dev_score desc, c.id",
    }
    sql = (f"select c.id, {rank} as relevance, {test} as test_score, {rerank} as rerank_score "
           f"from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id{joins} "
           f"where {' and '.join(where)} order by {orders[order]} limit {limit}")
    return [tuple(row) for row in h.db.execute(sql, args).fetchall()]


def _shown(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["id"], r["relevance"], r["test_score"], r["rerank_score"]) for r in rows]


def test_m003_adds_the_search_indexes_and_drops_the_redundant_one(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    assert "m003_search_indexes" in known_names()
    assert "idx_candidates_dev_score" in _indexes(h, "candidates")
    scores = _indexes(h, "scores")
    assert "idx_scores_candidate_kind" in scores and "idx_scores_candidate_id" not in scores
    cols = [r[2] for r in h.db.execute("pragma index_info(idx_scores_candidate_kind)").fetchall()]
    assert cols == ["candidate_id", "kind", "id"]


def test_a_history_from_before_m003_gets_the_indexes_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m003_search_indexes")
    run = db["runs"].insert({"task": "t", "method": "instructzero", "settings_json": "{}",
                             "endpoint_json": '{"name": "embedded"}', "status": "finished"}).last_pk
    cid = db["candidates"].insert({"run_id": run, "iteration": 0, "position": 0, "instruction": "Name the animal.",
                                   "status": "scored", "dev_score": 0.5, "scores_json": "[0.5]"}).last_pk
    db["scores"].insert({"candidate_id": cid, "kind": "test", "split": "test", "n_examples": 1, "score": 0.75})
    db.close()
    h = open_history(path)  # applies m003 and whatever follows it
    assert h.schema_version == len(known_names())
    assert "idx_candidates_dev_score" in _indexes(h, "candidates")
    assert "idx_scores_candidate_kind" in _indexes(h, "scores")
    rows = h.search("animal", order="rerank")
    assert [(r["id"], r["test_score"]) for r in rows] == [(cid, 0.75)]


def test_the_default_page_walks_the_dev_score_index_instead_of_sorting(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    _fill(h, n_runs=1, per_run=5)
    sql = ("select c.id from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id "
           "where c.status = 'scored' and c.duplicate_of is null order by c.dev_score desc, c.id limit 500")
    plan = " | ".join(r[3] for r in h.db.execute("explain query plan " + sql).fetchall())
    assert "idx_candidates_dev_score" in plan and "TEMP B-TREE" not in plan, plan
    latest = "select score from scores s where s.candidate_id = ? and s.kind = 'test' order by s.id desc limit 1"
    plan = " | ".join(r[3] for r in h.db.execute("explain query plan " + latest, [1]).fetchall())
    assert "idx_scores_candidate_kind" in plan and "TEMP B-TREE" not in plan, plan


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    h = open_history(tmp_path_factory.mktemp("store") / "h.db")
    _fill(h)
    yield h
    h.close()


@pytest.mark.parametrize("order", ["relevance", "score", "rerank", "newest", "rank"])
@pytest.mark.parametrize("filters", [
    {}, {"query": "animal"}, {"query": "larger word", "task": "larger_animal"}, {"task": "antonyms"},
    {"method": "random", "min_score": 0.5}, {"starred": True}, {"duplicates": True}, {"query": "first", "starred": True},
])
def test_search_returns_what_sorting_every_row_returns(filled: History, order: str, filters: dict[str, Any]) -> None:
    """The two-step queries (page of ids first, rerank/rank sorts in two parts) change no result or order."""
    h = filled
    for limit in (3, 17, 500):
        assert _shown(h.search(**filters, order=order, limit=limit)) == \
            _plain_search(h, **filters, order=order, limit=limit), (filters, order, limit)


def test_rerank_order_puts_scored_candidates_first_latest_rerank_over_test(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db")
    run = h.create_run("t", "instructzero", {}, ENDPOINT)
    ids = []
    for pos, dev in enumerate([1.0, 0.9, 0.2, 0.1]):
        cid = h.add_candidate(run, 0, pos, None, f"Instruction {pos}.")
        h.record_score(cid, dev_score=dev, scores=[dev], outputs=[], usage=Usage())
        ids.append(cid)
    h.add_score(ids[3], kind="test", split="test", endpoint=ENDPOINT, metric="m", score=0.5, outputs=[])
    h.add_score(ids[2], kind="test", split="test", endpoint=ENDPOINT, metric="m", score=0.9, outputs=[])
    h.add_score(ids[2], kind="rerank", split="test", endpoint=ENDPOINT, metric="m", score=0.7, outputs=[])
    h.add_score(ids[2], kind="rerank", split="test", endpoint=ENDPOINT, metric="m", score=0.0, outputs=[])
    rows = h.search(order="rerank")
    # 0.5 (test) before 0.0 (the latest rerank of #2 wins over its test 0.9), then the rest by dev score.
    assert [r["id"] for r in rows] == [ids[3], ids[2], ids[0], ids[1]]
    assert rows[1]["rerank_score"] == 0.0 and rows[1]["test_score"] == 0.9
    assert [r["id"] for r in h.search(order="rerank", limit=1)] == [ids[3]]


def test_the_plain_sql_writes_keep_the_store_api(tmp_path: Path) -> None:
    """add_candidate / record_score / add_score / cache_put write with plain SQL (bench/history_scale.py): the
    same rows as before, an upsert for the cache, and a clear error for an unknown candidate."""
    from engine.errors import StoreError

    h = open_history(tmp_path / "h.db")
    run = h.create_run("t", "instructzero", {}, ENDPOINT)
    cid = h.add_candidate(run, 0, 0, [0.5, -0.5], "Name it.")
    out = [{"input": "x", "answers": ["y"], "output": "y", "score": 1.0, "cache_hit": True, "latency_s": 0.25}]
    h.record_score(cid, dev_score=1.0, scores=[1.0], outputs=out, usage=Usage.of_answers(out),
                   run_totals={"evaluations": 1, "calls_saved": 1})
    c = h.candidate(cid)
    assert (c["status"], c["z"], c["scores"], c["calls_saved"], c["cache_hit"]) == ("scored", [0.5, -0.5], [1.0], 1, 1)
    assert c["latency_s"] == 0.25 and h.outputs(cid)[0]["answers"] == ["y"]
    assert (h.run(run)["evaluations"], h.run(run)["calls_saved"]) == (1, 1)
    sid = h.add_score(cid, kind="test", split="test", endpoint=ENDPOINT, metric="m", score=0.5, outputs=out)
    assert h.scores(cid)[0]["id"] == sid and h.outputs(cid, "test")[0]["score_id"] == sid
    with pytest.raises(StoreError):
        h.record_score(cid + 99, dev_score=0.0, scores=[], outputs=[], usage=Usage())
    row = {"key": "k", "base_url": "u", "model": "m", "params": {"t": 0}, "prompt_sha256": "p", "response": "a",
           "prompt_tokens": 1, "completion_tokens": 1, "latency_s": 0.1}
    h.cache_put(row)
    h.cache_put({**row, "response": "b"})
    assert h.cache_get("k")["response"] == "b" and h.cache_get("k")["params"] == {"t": 0}
    assert h.db.execute("select count(*) from cache").fetchone()[0] == 1


@pytest.fixture(scope="module")
def shared_texts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Six runs drawing from 30 sentences: most instructions appear in several runs, with different scores."""
    h = open_history(tmp_path_factory.mktemp("groups") / "h.db")
    _fill(h, n_runs=6, per_run=25, seed=1, pool=30)
    yield h
    h.close()


def _plain_groups(h: History, query: str | None = None, *, order: str = "relevance", limit: int = 500,
                  **filters: Any) -> list[tuple[Any, ...]]:
    """The definition of a grouped page, in Python: every matching row read, grouped by text and sorted by the
    group's keys (best member: highest dev score, then lowest id; best test / rerank: the highest latest one)."""
    rows = _plain_search(h, query, order="newest", limit=10**9, **filters)
    info = {r[0]: r for r in h.db.execute(
        "select c.id, c.instruction, c.dev_score, m.manual_rank from candidates c "
        "left join marks m on m.candidate_id = c.id").fetchall()}
    groups: dict[str, dict[str, Any]] = {}
    for cid, rel, test, rerank in rows:
        _, text, dev, rank = info[cid]
        g = groups.setdefault(text, {"members": [], "rel": [], "test": [], "rerank": [], "rank": []})
        g["members"].append((dev, cid))
        for key, value in (("rel", rel), ("test", test), ("rerank", rerank), ("rank", rank)):
            if value is not None:
                g[key].append(value)
    out = []
    for g in groups.values():
        best_dev = max(dev for dev, _ in g["members"])
        best_id = min(cid for dev, cid in g["members"] if dev == best_dev)
        test, rerank = max(g["test"], default=None), max(g["rerank"], default=None)
        out.append({"id": best_id, "dev": best_dev, "n": len(g["members"]), "newest": max(c for _, c in g["members"]),
                    "rel": min(g["rel"], default=None), "test": test, "rerank": rerank,
                    "key": rerank if rerank is not None else test, "rank": min(g["rank"], default=None)})
    by_dev = lambda g: (-g["dev"], g["id"])  # noqa: E731
    keys = {
        "score": by_dev,
        "newest": lambda g: -g["newest"],
        "rerank": lambda g: (g["key"] is None, -(g["key"] or 0), *by_dev(g)),
        "rank": lambda g: (g["rank"] is None, g["rank"] or 0, *by_dev(g)),
    }
    key = keys.get(order, (lambda g: (g["rel"], *by_dev(g))) if query else by_dev)
    return [(g["id"], g["rel"], g["test"], g["rerank"], g["n"]) for g in sorted(out, key=key)[:limit]]


@pytest.mark.parametrize("order", ["relevance", "score", "rerank", "newest", "rank"])
@pytest.mark.parametrize("filters", [
    {}, {"query": "animal"}, {"query": "larger word", "task": "larger_animal"}, {"task": "antonyms"},
    {"method": "random", "min_score": 0.5}, {"starred": True}, {"duplicates": True}, {"query": "first", "starred": True},
])
def test_grouped_search_returns_what_grouping_every_row_returns(shared_texts: History, order: str,
                                                               filters: dict[str, Any]) -> None:
    """The grouped page (index walk, scores joined to the page only, a rerank sort in two parts) is the plain
    definition of grouping, for every filter, order and page size."""
    h = shared_texts
    assert [r["id"] for r in h.search(group=True, order=order, limit=-1, **filters)] == \
        [g[0] for g in _plain_groups(h, **filters, order=order, limit=10**9)]  # -1: no limit, as in SQLite
    counts = [r["group_count"] for r in h.search(group=True, **filters)]
    assert max(counts) > 1 or filters.get("starred"), counts  # the groups are real ones
    for limit in (3, 17, 500):
        got = [(r["id"], r["relevance"], r["test_score"], r["rerank_score"], r["group_count"])
               for r in h.search(**filters, order=order, limit=limit, group=True)]
        assert got == _plain_groups(h, **filters, order=order, limit=limit), (filters, order, limit)


def test_the_grouped_page_walks_an_index_and_seeks_the_groups(tmp_path: Path) -> None:
    """Without a query a grouped page reads candidates in an index's order (no sort) until it has its texts,
    then seeks each text's group in idx_candidates_group (m009) without reading runs."""
    from engine.store.search import _group_from, _group_stats_sql, _walk_sql

    h = open_history(tmp_path / "h.db")
    _fill(h, n_runs=1, per_run=5)
    assert "idx_candidates_group" in _indexes(h, "candidates")
    where = "c.status = 'scored' and c.duplicate_of is null"

    def plan(sql: str, args: list[Any]) -> str:
        return " | ".join(r[3] for r in h.db.execute("explain query plan " + sql, args).fetchall())

    frm = _group_from(where, "score")
    assert "runs" not in frm and "marks" not in frm
    for order, index in (("score", "idx_candidates_dev_score"), ("newest", "SCAN c")):  # newest: rowid order
        walk = plan(_walk_sql(frm, where, order), [])
        assert index in walk and "TEMP B-TREE" not in walk, walk
    stats = plan(_group_stats_sql(frm, where, "score"), ['["Name it."]'])
    assert "idx_candidates_group (instruction=?)" in stats, stats
    assert "runs" in _group_from(where + " and r.task = ?", "score")
    assert "marks" in _group_from(where, "rank")
