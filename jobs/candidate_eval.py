"""Measuring candidate pools against what users engaged with after the build.

The world is cut at a build time T: every raw row stamped after T is removed (`truncate_raw_table`),
the platform is built from the rest with `as_of = T`, and the positive engagements of the next
`horizon` (`heldout_positives`) are the held-out truth. A held-out (user, tweet) pair is found when
the tweet is in the user's pool; recall is the share of pairs found (micro), per source and for the
union. The baseline (`popularity_same_size_recall`) gives each user a pool of the same size made of
the globally most engaged fresh tweets, with the same exclusions as the real pool.

Only engagements with tweets that existed (and were not deleted) at T can be found by any pool, so
the held-out set is restricted to those; how many were left out is reported next to the recall.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.contract import RawTable
from core.sources import CANDIDATE_SOURCES

# Explicit engagements: what a For You pool exists to surface.
HELDOUT_ACTIONS = ("like", "retweet", "reply", "quote", "bookmark", "share")


def time_column(table: RawTable) -> str:
    """The column that says when a row came to be (the contract's duplicate-resolution order)."""
    return table.order_by[0]


def truncate_raw_table(rows: pa.Table, table: RawTable, *, cutoff: datetime) -> pa.Table:
    """`rows` as they were known at `cutoff`: rows stamped later are dropped, later deletions undone."""
    stamp = rows.column(time_column(table))
    kept = rows.filter(pc.less_equal(stamp, pa.scalar(cutoff, type=stamp.type)))
    if "deleted_at" in kept.column_names:
        deleted = kept.column("deleted_at")
        later = pc.fill_null(pc.greater(deleted, pa.scalar(cutoff, type=deleted.type)), False)
        kept = kept.set_column(
            kept.schema.get_field_index("deleted_at"),
            "deleted_at",
            pc.if_else(later, pa.nulls(len(kept), type=deleted.type), deleted),
        )
    return kept


def heldout_positives(
    engagements: pa.Table, tweets: pa.Table, *, cutoff: datetime, horizon: timedelta
) -> tuple[pa.Table, dict]:
    """Distinct (user_id, tweet_id) with an explicit engagement in (cutoff, cutoff + horizon] on a tweet
    that was live at cutoff, and counts of what was left out."""
    con = duckdb.connect()
    con.register("engagements", engagements)
    con.register("tweets", tweets)
    params = {"cutoff": cutoff, "until": cutoff + horizon, "actions": list(HELDOUT_ACTIONS)}
    pairs = con.sql(
        """
        SELECT DISTINCT e.user_id, e.tweet_id,
               (t.created_at <= $cutoff AND (t.deleted_at IS NULL OR t.deleted_at > $cutoff)) AS live_at_cutoff
        FROM engagements e JOIN tweets t USING (tweet_id)
        WHERE e.action IN (SELECT unnest($actions))
          AND e.created_at > $cutoff AND e.created_at <= $until
          AND e.user_id <> t.author_id
        """,
        params=params,
    ).to_arrow_table()
    live = pairs.filter(pairs.column("live_at_cutoff")).select(["user_id", "tweet_id"])
    return live, {"heldout_pairs": live.num_rows, "heldout_pairs_on_later_tweets": pairs.num_rows - live.num_rows}


def pool_recall(pool: pa.Table, heldout: pa.Table) -> dict[str, float]:
    """Share of held-out pairs in the pool: `union`, and one key per source (pairs that source produced)."""
    if heldout.num_rows == 0:
        return {"union": float("nan"), **{s: float("nan") for s in CANDIDATE_SOURCES}}
    con = duckdb.connect()
    con.register("pool", pool.select(["user_id", "tweet_id", "sources"]))
    con.register("heldout", heldout)
    per_source = ", ".join(f"count(*) FILTER (WHERE list_contains(p.sources, '{s}')) AS {s}" for s in CANDIDATE_SOURCES)
    found = (
        con.sql(
            f"SELECT count(p.tweet_id) AS union_found, {per_source} "
            "FROM heldout h LEFT JOIN pool p USING (user_id, tweet_id)"
        )
        .to_arrow_table()
        .to_pylist()[0]
    )
    total = heldout.num_rows
    return {"union": found["union_found"] / total, **{s: found[s] / total for s in CANDIDATE_SOURCES}}


def popularity_same_size_recall(
    pool: pa.Table,
    heldout: pa.Table,
    engagements: pa.Table,
    tweets: pa.Table,
    *,
    cutoff: datetime,
    freshness: timedelta,
    half_life: timedelta = timedelta(hours=24),
) -> float:
    """Recall of per-user pools as large as each user's real pool, filled with the fresh tweets (live at
    `cutoff`, younger than `freshness`) with the most decayed explicit engagement before `cutoff`,
    excluding the user's own tweets and tweets the user had already seen or engaged with.

    A held-out (u, t) is found when t's rank in u's filtered list is within u's pool size; that rank is
    t's global rank minus the excluded tweets ranked above it, so no per-user list is materialised.
    """
    if heldout.num_rows == 0:
        return float("nan")
    con = duckdb.connect()
    con.register("pool", pool.select(["user_id", "tweet_id"]))
    con.register("heldout", heldout)
    con.register("engagements", engagements)
    con.register("tweets", tweets)
    params = {
        "cutoff": cutoff,
        "oldest": cutoff - freshness,
        "half_life_s": half_life.total_seconds(),
        "actions": list(HELDOUT_ACTIONS),
    }
    (found,) = con.execute(
        """
        WITH fresh AS (
            SELECT tweet_id, author_id FROM tweets
            WHERE created_at <= $cutoff AND created_at > $oldest
              AND (deleted_at IS NULL OR deleted_at > $cutoff)
        ),
        popularity AS (
            SELECT f.tweet_id, f.author_id,
                   coalesce(sum(pow(0.5, (epoch($cutoff) - epoch(e.created_at)) / $half_life_s))
                            FILTER (WHERE e.action IN (SELECT unnest($actions))), 0) AS score
            FROM fresh f LEFT JOIN engagements e ON e.tweet_id = f.tweet_id AND e.created_at <= $cutoff
            GROUP BY ALL
        ),
        ranked AS (
            SELECT tweet_id, author_id, row_number() OVER (ORDER BY score DESC, tweet_id) AS global_rank
            FROM popularity
        ),
        pool_size AS (SELECT user_id, count(*) AS size FROM pool GROUP BY ALL),
        seen AS (SELECT DISTINCT user_id, tweet_id FROM engagements WHERE created_at <= $cutoff),
        -- per user, the ranked tweets excluded for them (their own, and those already seen)
        excluded AS (
            SELECT DISTINCT u.user_id, r.global_rank
            FROM pool_size u JOIN ranked r ON r.author_id = u.user_id
            UNION
            SELECT s.user_id, r.global_rank FROM seen s JOIN ranked r USING (tweet_id)
        ),
        candidates AS (
            SELECT h.user_id, r.global_rank, coalesce(p.size, 0) AS size
            FROM heldout h
            JOIN ranked r USING (tweet_id)
            LEFT JOIN pool_size p USING (user_id)
            WHERE NOT EXISTS (SELECT 1 FROM excluded x WHERE x.user_id = h.user_id AND x.global_rank = r.global_rank)
        )
        SELECT count(*) FROM candidates c
        WHERE c.global_rank - (SELECT count(*) FROM excluded x WHERE x.user_id = c.user_id AND x.global_rank < c.global_rank)
              <= c.size
        """,
        params,
    ).fetchone()
    return found / heldout.num_rows


def pool_size_summary(pool: pa.Table, active_users: pa.Array) -> dict:
    """Pool size percentiles over users with a pool, the share of active users with one, the source mix."""
    con = duckdb.connect()
    con.register("pool", pool.select(["user_id", "sources"]))
    sizes = con.sql("SELECT count(*) AS n FROM pool GROUP BY user_id").to_arrow_table().column("n").to_numpy()
    users_with_pool = set(pc.unique(pool.column("user_id")).to_pylist())
    active = set(pc.unique(active_users).to_pylist())
    mix = (
        con.sql(
            "SELECT s AS source, count(*) AS n FROM (SELECT unnest(sources) AS s FROM pool) GROUP BY ALL ORDER BY source"
        )
        .to_arrow_table()
        .to_pylist()
    )
    total_rows = max(pool.num_rows, 1)
    return {
        "pool_size": {
            "p50": float(np.percentile(sizes, 50)) if len(sizes) else 0.0,
            "p95": float(np.percentile(sizes, 95)) if len(sizes) else 0.0,
            "max": int(sizes.max()) if len(sizes) else 0,
            "mean": round(float(sizes.mean()), 1) if len(sizes) else 0.0,
        },
        "users_with_pool": round(len(active & users_with_pool) / len(active), 4) if active else float("nan"),
        "active_users": len(active),
        # Share of pool rows each source produced (rows with several sources count for each).
        "source_mix": {row["source"]: round(row["n"] / total_rows, 4) for row in mix},
    }
