"""Searching the history: full-text search ranked by bm25, filters, orders, and pages grouped by instruction text.

Why a module of its own: it is the one part of the store that is about reading many candidates fast (100,000 in
bench/history_scale.py), with SQL built for the indexes of engine/store/migrations.py; the rest of the store is
runs, candidates and their scores one at a time. :meth:`History.search` passes through to :func:`search`, so the
journaling store of sweep workers and the TUI do not change.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any, Protocol

from engine.errors import StoreError

#: The columns of a candidate row as every reader returns it (the candidate, its run's task and method, its marks),
#: and the joins they come from: written once, used by the candidate reads and by the search (engine/store/search.py).
CANDIDATE_COLUMNS = "c.*, r.task, r.method, m.star, m.note, m.manual_rank"
CANDIDATE_JOINS = "from candidates c join runs r on r.id = c.run_id left join marks m on m.candidate_id = c.id"




class History(Protocol):
    """What the search reads of the store (engine.store.history.History, which imports this module)."""

    db: sqlite3.Connection

    def _query(self, sql: str, args: Any = ()) -> list[dict[str, Any]]: ...
    def _cand_row(self, row: dict[str, Any]) -> dict[str, Any]: ...
    def _error(self, exc: sqlite3.DatabaseError, doing: str) -> Any: ...

#: The latest score of a kind (test, rerank) of candidate ``c``; idx_scores_candidate_kind (m003) seeks it directly.
_LATEST = "(select s.score from scores s where s.candidate_id = c.id and s.kind = '{}' order by s.id desc limit 1)"
_FROM = CANDIDATE_JOINS


def search(
    h: History,
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
            return [h._cand_row(r) for r in _grouped_page(h, " and ".join(where), args, order, int(limit))]
        build = _group_sql if group else _search_sql
        sql, args = build(" and ".join(where), args, joins, rank, order, int(limit))
        return [h._cand_row(r) for r in h._query(sql, args)]
    except sqlite3.OperationalError as exc:
        raise StoreError(f"bad search {query!r}: {exc}", "use plain words; quote a phrase with \"\"") from None

def _grouped_page(h: History, where: str, args: list[Any], order: str, limit: int) -> list[dict[str, Any]]:
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
        texts = [r["instruction"] for r in h._query(
            f"select distinct c.instruction {frm} where {where} and {has}", args)]
        key = "best_key" if order == "rerank" else "best_rank"
        sign = -1 if order == "rerank" else 1
        keyed = [g for g in _group_stats(h, frm, where, args, texts, order).values() if g[key] is not None]
        first = [g["instruction"] for g in sorted(keyed, key=lambda g: (sign * g[key], -g["best_dev"], g["id"]))]
        first = first[:limit]
    seen = set(first)
    try:
        for (text,) in h.db.execute(_walk_sql(frm, where, order), args) if len(first) < limit else ():
            if text is not None and text not in seen:
                seen.add(text)
                first.append(text)
                if len(first) == limit:
                    break
    except sqlite3.DatabaseError as exc:
        raise h._error(exc, "read") or exc from None
    groups = _group_stats(h, frm, where, args, first, order)
    if not first:
        return []
    rows = {r["id"]: r for r in h._query(
        f"select {CANDIDATE_COLUMNS} {CANDIDATE_JOINS} "
        "where c.id in (select value from json_each(?))", [json.dumps([g["id"] for g in groups.values()])])}
    page = []
    for text in first:
        g = groups[text]
        page.append({**rows[g["id"]], "relevance": None, "test_score": g["best_test"],
                     "rerank_score": g["best_rerank"], "group_count": g["n"]})
    return page

def _group_stats(h: History, frm: str, where: str, args: list[Any], texts: list[str],
                 order: str) -> dict[str, dict[str, Any]]:
    """Each text's group among the matching candidates: its best member (``id``), size, best dev score,
    best latest test and rerank scores, the key a rerank sort uses and the best manual rank."""
    if not texts:
        return {}
    sql = _group_stats_sql(frm, where, order)
    groups = {}
    for r in h._query(sql, [*args, json.dumps(texts)]):
        key = r["best_rerank"] if r["best_rerank"] is not None else r["best_test"]
        groups[r["instruction"]] = {**r, "best_key": key}
    return groups


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
    sql = (f"with page as ({page}) select {CANDIDATE_COLUMNS}, "
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
           f"select {CANDIDATE_COLUMNS}, g.rel as relevance, "
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
