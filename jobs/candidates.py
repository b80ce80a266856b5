"""Candidate generation for the For You timeline: six sources merged into one pool per user.

After Home Mixer's For You candidate pipelines (twitter/the-algorithm `home-mixer`), computed in
batch at build time T for every user:

| source | Home Mixer counterpart | retrieves |
|---|---|---|
| `in_network` | Earlybird in-network | recent tweets of followed accounts, RealGraph weight x recency |
| `uteg` | UserTweetEntityGraph | tweets the user's strongest followees engaged with |
| `simclusters` | SimClusters ANN (cr-mixer) | tweets of the user's InterestedIn communities |
| `twhin` | TwHIN ANN (cr-mixer) | nearest tweets to the user's TwHIN vector (exact here) |
| `frs` | FRS-based tweets | recent tweets of accounts recommended by the two-hop expansion |
| `popular` | cold-start backfill | the most engaged recent tweets, global and per community |

Every source reads tweets from one *pool*: tweets created in [T - freshness, T] and not deleted at
or before T (`tweet_pool`); that is the tweet-level eligibility (stale, future and deleted tweets
never become candidates). Each source returns rows of `SOURCE_SCHEMA`, at most its cap per user,
rank 1 first. `merge_sources` keeps one row per (user, tweet) with every source that produced it;
`tag_filters` names the first viewer-level filter each row fails (own tweet, blocked or muted
author, previously seen); `select_candidates` drops those, keeps `max_candidates_per_user` per
user in the interleaving order and ends with the `CANDIDATES_SCHEMA` select.

Transforms are pure `DataFrame -> DataFrame` functions with keyword-only parameters, except that
`simclusters_source` and `twhin_source` collect their (small) tweet-side index to the driver and
ship it to the workers, where users stream through `mapInArrow` in blocks. Defaults live in
`CandidatesConfig`; docs/candidates.md describes the table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

SOURCES = ("in_network", "uteg", "simclusters", "twhin", "frs", "popular")
# Viewer-level filters, in the order they are checked (cheapest first); a removed row carries the
# name of the first one it fails in `filtered_by`.
FILTERS = ("self_tweet", "blocked_or_muted", "previously_seen")
ENGAGEMENT_ACTIONS = ("like", "retweet", "reply", "quote")
HIDING_SOCIAL_ACTIONS = ("block", "mute")


@dataclass(frozen=True)
class CandidatesConfig:
    # --- shared ---
    # The tweet pool: tweets created at most this long before T (and not after it), not deleted.
    freshness_hours: float = 72.0
    # Home Mixer's previously-seen filter: drop tweets the user had one of `seen_actions` on.
    exclude_seen: bool = True
    seen_actions: tuple[str, ...] = ("impression",) + ENGAGEMENT_ACTIONS
    max_proofs: int = 5
    max_candidates_per_user: int = 1500
    sources: tuple[str, ...] = SOURCES
    # Recency decay of in_network and frs scores: 0.5 ** (tweet age / half-life).
    recency_half_life_hours: float = 24.0
    # --- in_network ---
    in_network_window_hours: float = 48.0
    in_network_top_k: int = 600
    # Weight of a followed account missing from `realgraph` (RealGraph scores are probabilities).
    realgraph_floor: float = 0.01
    # --- uteg ---
    uteg_followees: int = 20
    uteg_window_hours: float = 24.0
    uteg_actions: tuple[str, ...] = ENGAGEMENT_ACTIONS
    uteg_top_k: int = 300
    # --- simclusters ---
    simclusters_clusters: int = 20
    # How deep each cluster's index (`simclusters_top_tweets_per_cluster`, rank order) is read.
    simclusters_tweets_per_cluster: int = 500
    simclusters_top_k: int = 400
    # --- twhin ---
    twhin_top_k: int = 400
    # --- frs ---
    frs_accounts: int = 20
    frs_window_hours: float = 48.0
    frs_top_k: int = 100
    # --- popular ---
    popular_window_hours: float = 48.0
    popular_half_life_hours: float = 12.0
    popular_actions: tuple[str, ...] = ENGAGEMENT_ACTIONS
    popular_global_k: int = 50
    popular_per_community_k: int = 50
    popular_user_communities: int = 3
    # --- the Arrow kernels (simclusters, twhin) ---
    # Scores held at once per worker: TwHIN scores users_per_block x tweets, SimClusters expands
    # at most this many (user, cluster, tweet) entries at once.
    block_elements: int = 4_000_000

    @property
    def popular_top_k(self) -> int:
        return self.popular_global_k + self.popular_user_communities * self.popular_per_community_k

    def source_caps(self) -> dict[str, int]:
        """Per-source cap per user: the denominator of the interleaving key."""
        return {
            "in_network": self.in_network_top_k,
            "uteg": self.uteg_top_k,
            "simclusters": self.simclusters_top_k,
            "twhin": self.twhin_top_k,
            "frs": self.frs_top_k,
            "popular": self.popular_top_k,
        }

    def __post_init__(self) -> None:
        unknown = set(self.sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown candidate sources {sorted(unknown)}; known: {SOURCES}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"CandidatesConfig.{f.name} must be positive, got {value}")


DEFAULTS = CandidatesConfig()

# What every source returns: one row per (user, tweet), at most the source's cap per user.
SOURCE_SCHEMA = T.StructType([
    T.StructField("user_id", T.LongType(), False),
    T.StructField("tweet_id", T.LongType(), False),
    T.StructField("author_id", T.LongType(), False),
    T.StructField("tweet_created_at", T.TimestampType(), False),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("rank", T.IntegerType(), False),  # 1 = the source's best for the user
    T.StructField("proof_user_ids", T.ArrayType(T.LongType()), True),  # uteg, frs
    T.StructField("proof_count", T.IntegerType(), True),  # uteg, frs
    T.StructField("cluster_id", T.IntegerType(), True),  # simclusters
])

CANDIDATES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.LongType(), False),
        T.StructField("tweet_id", T.LongType(), False),
        T.StructField("author_id", T.LongType(), False),
        T.StructField("tweet_created_at", T.TimestampType(), False),
        T.StructField("pool_rank", T.IntegerType(), False),
        T.StructField("sources", T.ArrayType(T.StringType()), False),
        T.StructField("is_in_network", T.BooleanType(), False),
    ]
    + [T.StructField(f"{s}_score", T.DoubleType(), True) for s in SOURCES]
    + [T.StructField(f"{s}_rank", T.IntegerType(), True) for s in SOURCES]
    + [
        T.StructField("simclusters_cluster_id", T.IntegerType(), True),
        T.StructField("social_proof_user_ids", T.ArrayType(T.LongType()), False),
        T.StructField("social_proof_count", T.IntegerType(), False),
        T.StructField("built_at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class CandidateInputs:
    """The tables candidate generation reads, as DataFrames with the warehouse's columns."""

    tweets: DataFrame
    follows: DataFrame
    engagements: DataFrame
    social_actions: DataFrame
    users: DataFrame
    realgraph: DataFrame
    follow_graph_two_hop: DataFrame
    simclusters_interested_in: DataFrame
    simclusters_top_tweets_per_cluster: DataFrame
    simclusters_known_for: DataFrame
    twhin_user_embeddings: DataFrame
    twhin_tweet_embeddings: DataFrame


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _age_hours(column: str, as_of: datetime) -> Column:
    return (F.unix_micros(F.lit(as_of)) - F.unix_micros(F.col(column))) / F.lit(3.6e9)


def _decay(column: str, as_of: datetime, half_life_hours: float) -> Column:
    return F.pow(F.lit(0.5), _age_hours(column, as_of) / F.lit(half_life_hours))


def _between(column: str, start: datetime, end: datetime) -> Column:
    return (F.col(column) >= F.lit(start)) & (F.col(column) <= F.lit(end))


def _top_k_per_user(scored: DataFrame, *, k: int) -> DataFrame:
    """Rows of `SOURCE_SCHEMA`: each user's k best by score, ties by tweet id; missing optional
    columns are null."""
    window = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("tweet_id"))
    ranked = scored.withColumn("rank", F.row_number().over(window)).where(F.col("rank") <= k)
    return _as_source_rows(ranked)


def _as_source_rows(df: DataFrame) -> DataFrame:
    present = set(df.columns)
    return df.select(*[
        (F.col(f.name) if f.name in present else F.lit(None)).cast(f.dataType).alias(f.name)
        for f in SOURCE_SCHEMA.fields
    ])


def _empty_source(df: DataFrame) -> DataFrame:
    return df.sparkSession.createDataFrame([], SOURCE_SCHEMA)


def _ranked_per_user(df: DataFrame, *, order: list[Column], k: int) -> DataFrame:
    window = Window.partitionBy("user_id").orderBy(*order)
    return df.withColumn("_position", F.row_number().over(window)).where(F.col("_position") <= k).drop("_position")


# ---------------------------------------------------------------------------------------------
# The tweet pool and the viewer context
# ---------------------------------------------------------------------------------------------

def tweet_pool(tweets: DataFrame, *, as_of: datetime, freshness_hours: float = DEFAULTS.freshness_hours) -> DataFrame:
    """(tweet_id, author_id, created_at): tweets created in [as_of - freshness, as_of] that were not
    deleted at or before as_of. Every source retrieves from this pool."""
    return tweets.where(
        _between("created_at", as_of - timedelta(hours=freshness_hours), as_of)
        & (F.col("deleted_at").isNull() | (F.col("deleted_at") > F.lit(as_of)))
    ).select("tweet_id", "author_id", "created_at")


def tweet_pool_exclusions(
    tweets: DataFrame, *, as_of: datetime, freshness_hours: float = DEFAULTS.freshness_hours
) -> DataFrame:
    """One row (future, stale, deleted, eligible): how many tweets the pool leaves out and why
    (first reason in that order) and how many it keeps."""
    start = as_of - timedelta(hours=freshness_hours)
    future = F.col("created_at") > F.lit(as_of)
    stale = F.col("created_at") < F.lit(start)
    deleted = F.col("deleted_at").isNotNull() & (F.col("deleted_at") <= F.lit(as_of))
    count = lambda condition: F.sum(F.when(condition, 1).otherwise(0)).cast("long")  # noqa: E731
    return tweets.agg(
        count(future).alias("future"),
        count(~future & stale).alias("stale"),
        count(~future & ~stale & deleted).alias("deleted"),
        count(~future & ~stale & ~deleted).alias("eligible"),
    )


def followed_authors(
    follows: DataFrame, realgraph: DataFrame, *, as_of: datetime, floor: float = DEFAULTS.realgraph_floor
) -> DataFrame:
    """(user_id, author_id, weight): accounts the user follows at as_of, weighted by RealGraph
    (`floor` for pairs RealGraph does not hold)."""
    edges = follows.where(F.col("created_at") <= F.lit(as_of)).select(
        F.col("follower_id").alias("user_id"), F.col("followee_id").alias("author_id")
    )
    weights = realgraph.select("user_id", "author_id", F.col("score").alias("_rg"))
    return edges.join(weights, on=["user_id", "author_id"], how="left").select(
        "user_id", "author_id", F.coalesce(F.col("_rg"), F.lit(floor)).cast("double").alias("weight")
    )


def viewer_context(
    follows: DataFrame,
    social_actions: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: CandidatesConfig = DEFAULTS,
) -> DataFrame:
    """(user_id, followed_ids, hidden_author_ids, seen_tweet_ids), one row per user with any of them:
    accounts followed at as_of, accounts blocked or muted at or before as_of, and tweets of the pool
    the user already had a `seen_actions` engagement with (engagements in the freshness window:
    an engagement is never older than its tweet, so older ones cannot touch a pool tweet)."""
    followed = (
        follows.where(F.col("created_at") <= F.lit(as_of))
        .groupBy(F.col("follower_id").alias("user_id"))
        .agg(F.collect_list("followee_id").alias("followed_ids"))
    )
    hidden = (
        social_actions.where(
            F.col("action").isin(*HIDING_SOCIAL_ACTIONS) & (F.col("created_at") <= F.lit(as_of))
        )
        .groupBy("user_id")
        .agg(F.collect_set("target_user_id").alias("hidden_author_ids"))
    )
    context = followed.join(hidden, on="user_id", how="full")
    if config.exclude_seen:
        seen = (
            engagements.where(
                F.col("action").isin(*config.seen_actions)
                & _between("created_at", as_of - timedelta(hours=config.freshness_hours), as_of)
            )
            .groupBy("user_id")
            .agg(F.collect_set("tweet_id").alias("seen_tweet_ids"))
        )
        context = context.join(seen, on="user_id", how="full")
    else:
        context = context.withColumn("seen_tweet_ids", F.lit(None).cast("array<bigint>"))
    return context.select("user_id", "followed_ids", "hidden_author_ids", "seen_tweet_ids")


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def in_network_source(
    followed: DataFrame, pool: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """Tweets of followed accounts from the last `in_network_window_hours`, scored
    weight x 0.5 ** (age / recency_half_life_hours); top `in_network_top_k` per user.
    `followed` is `followed_authors(...)`."""
    recent = pool.where(F.col("created_at") >= F.lit(as_of - timedelta(hours=config.in_network_window_hours)))
    scored = followed.join(recent, on="author_id", how="inner").select(
        "user_id",
        "tweet_id",
        "author_id",
        F.col("created_at").alias("tweet_created_at"),
        (F.col("weight") * _decay("created_at", as_of, config.recency_half_life_hours)).alias("score"),
    )
    return _top_k_per_user(scored, k=config.in_network_top_k)


def uteg_source(
    followed: DataFrame,
    engagements: DataFrame,
    pool: DataFrame,
    *,
    as_of: datetime,
    config: CandidatesConfig = DEFAULTS,
) -> DataFrame:
    """UserTweetEntityGraph-style: tweets that the user's `uteg_followees` strongest followees
    (RealGraph weight, ties by id) engaged with (`uteg_actions`) in the last `uteg_window_hours`.
    score = sum of the engaging followees' weights (each counted once per tweet); proof_user_ids =
    those followees, strongest first; proof_count = how many. Top `uteg_top_k` per user."""
    strongest = _ranked_per_user(
        followed, order=[F.col("weight").desc(), F.col("author_id")], k=config.uteg_followees
    ).select("user_id", F.col("author_id").alias("engager_id"), "weight")
    engaged = (
        engagements.where(
            F.col("action").isin(*config.uteg_actions)
            & _between("created_at", as_of - timedelta(hours=config.uteg_window_hours), as_of)
        )
        .select(F.col("user_id").alias("engager_id"), "tweet_id")
        .distinct()
    )
    proof = F.struct((-F.col("weight")).alias("neg_weight"), F.col("engager_id"))
    grouped = (
        strongest.join(engaged, on="engager_id", how="inner")
        .groupBy("user_id", "tweet_id")
        .agg(
            F.sum("weight").alias("score"),
            F.array_sort(F.collect_list(proof)).alias("_proofs"),
        )
    )
    scored = grouped.join(pool, on="tweet_id", how="inner").select(
        "user_id",
        "tweet_id",
        "author_id",
        F.col("created_at").alias("tweet_created_at"),
        "score",
        F.transform("_proofs", lambda p: p["engager_id"]).alias("proof_user_ids"),
        F.size("_proofs").alias("proof_count"),
    )
    return _top_k_per_user(scored, k=config.uteg_top_k)


def frs_source(
    two_hop: DataFrame, pool: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """Tweets from the last `frs_window_hours` by the user's `frs_accounts` best two-hop accounts
    (`follow_graph_two_hop` rank), scored social_proof_count x 0.5 ** (age / recency_half_life_hours);
    proofs are the two-hop proof users. Top `frs_top_k` per user."""
    accounts = two_hop.where(F.col("rank") <= config.frs_accounts).select(
        "user_id",
        F.col("candidate_id").alias("author_id"),
        F.col("social_proof_count").alias("proof_count"),
        F.col("proof_user_ids"),
    )
    recent = pool.where(F.col("created_at") >= F.lit(as_of - timedelta(hours=config.frs_window_hours)))
    scored = accounts.join(recent, on="author_id", how="inner").select(
        "user_id",
        "tweet_id",
        "author_id",
        F.col("created_at").alias("tweet_created_at"),
        (F.col("proof_count") * _decay("created_at", as_of, config.recency_half_life_hours)).alias("score"),
        "proof_user_ids",
        "proof_count",
    )
    return _top_k_per_user(scored, k=config.frs_top_k)


def popular_tweet_scores(
    engagements: DataFrame, pool: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """(tweet_id, author_id, created_at, score): pool tweets from the last `popular_window_hours`,
    score = sum over their `popular_actions` engagements at or before as_of of
    0.5 ** (engagement age / popular_half_life_hours)."""
    start = as_of - timedelta(hours=config.popular_window_hours)
    recent = pool.where(F.col("created_at") >= F.lit(start))
    weighted = engagements.where(
        F.col("action").isin(*config.popular_actions) & _between("created_at", start, as_of)
    ).select("tweet_id", _decay("created_at", as_of, config.popular_half_life_hours).alias("w"))
    return (
        weighted.join(recent, on="tweet_id", how="inner")
        .groupBy("tweet_id", "author_id", "created_at")
        .agg(F.sum("w").alias("score"))
    )


def popular_source(
    users: DataFrame,
    engagements: DataFrame,
    known_for: DataFrame,
    interested_in: DataFrame,
    pool: DataFrame,
    *,
    as_of: datetime,
    config: CandidatesConfig = DEFAULTS,
) -> DataFrame:
    """Backfill: the `popular_global_k` most engaged pool tweets (`popular_tweet_scores`) for every
    user who exists at as_of, and the `popular_per_community_k` best of each community (a tweet's
    community is its author's KnownFor cluster) for the users whose `popular_user_communities` top
    InterestedIn clusters include it. Deduplicated per user, ranked by score then tweet id."""
    scores = popular_tweet_scores(engagements, pool, as_of=as_of, config=config)
    entry = F.struct(
        (-F.col("score")).alias("neg_score"), F.col("tweet_id"), F.col("author_id"), F.col("created_at")
    )
    global_top = scores.orderBy(F.col("score").desc(), F.col("tweet_id")).limit(config.popular_global_k)
    community_of = known_for.select(F.col("producer_id").alias("author_id"), F.col("cluster_id"))
    by_community = Window.partitionBy("cluster_id").orderBy(F.col("score").desc(), F.col("tweet_id"))
    # A tweet has one community (its author's KnownFor cluster), so a user's lists can only share
    # tweets with the global list: those are left out of the community lists instead of
    # deduplicating every user's array.
    community_top = (
        scores.join(community_of, on="author_id", how="inner")
        .withColumn("_position", F.row_number().over(by_community))
        .where(F.col("_position") <= config.popular_per_community_k)
        .join(global_top.select("tweet_id"), on="tweet_id", how="left_anti")
        .groupBy("cluster_id")
        .agg(F.collect_list(entry).alias("entries"))
    )
    communities = _ranked_per_user(
        interested_in, order=[F.col("score").desc(), F.col("cluster_id")], k=config.popular_user_communities
    ).select("user_id", "cluster_id")
    community_entries = (
        communities.join(F.broadcast(community_top), on="cluster_id", how="inner")
        .groupBy("user_id")
        .agg(F.flatten(F.collect_list("entries")).alias("community_entries"))
    )
    global_entries = global_top.agg(F.collect_list(entry).alias("global_entries"))
    empty = F.array().cast(T.ArrayType(global_entries.schema["global_entries"].dataType.elementType))
    per_user = (
        users.where(F.col("created_at") <= F.lit(as_of))
        .select("user_id")
        .join(community_entries, on="user_id", how="left")
        .crossJoin(F.broadcast(global_entries))
        .select(
            "user_id",
            F.array_sort(F.concat(
                F.coalesce(F.col("global_entries"), empty), F.coalesce(F.col("community_entries"), empty)
            )).alias("_entries"),
        )
    )
    return _as_source_rows(
        per_user.select("user_id", F.posexplode("_entries").alias("_position", "_e")).select(
            "user_id",
            F.col("_e.tweet_id").alias("tweet_id"),
            F.col("_e.author_id").alias("author_id"),
            F.col("_e.created_at").alias("tweet_created_at"),
            (-F.col("_e.neg_score")).alias("score"),
            (F.col("_position") + 1).alias("rank"),
        )
    )


# --- the Arrow kernels -------------------------------------------------------------------------

_KERNEL_SCHEMA = T.StructType([
    T.StructField("user_id", T.LongType(), False),
    T.StructField("tweet_id", T.LongType(), False),
    T.StructField("author_id", T.LongType(), False),
    T.StructField("created_us", T.LongType(), False),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("cluster_id", T.IntegerType(), True),
])


@dataclass(frozen=True)
class TweetTable:
    """Tweet-side arrays shipped to the kernels, sorted by tweet id (column order = tie order)."""

    tweet_ids: np.ndarray
    author_ids: np.ndarray
    created_us: np.ndarray

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "TweetTable":
        return cls(
            tweet_ids=np.asarray(table["tweet_id"].to_numpy(), dtype=np.int64),
            author_ids=np.asarray(table["author_id"].to_numpy(), dtype=np.int64),
            created_us=np.asarray(table["created_us"].to_numpy(), dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.tweet_ids.shape[0])


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo_i, hi_i): (owner i of each position, the positions), concatenated."""
    lengths = hi - lo
    owner = np.repeat(np.arange(lo.shape[0]), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - offsets[owner] + lo[owner]
    return owner, positions


def _ranks_within(rows: np.ndarray) -> np.ndarray:
    """1-based position of each element within its run of equal `rows` (rows sorted)."""
    if rows.shape[0] == 0:
        return rows.astype(np.int32)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, rows.shape[0]]))
    return (np.arange(rows.shape[0]) - run_start + 1).astype(np.int32)


def top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of each row of a (b, n) score matrix, ties by column (lowest first), -inf never
    selected: (rows, cols, values, ranks), ordered by row then rank."""
    import torch

    b, n = scores.shape
    take = min(k, n)
    if b == 0 or take == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty.astype(np.int32)
    matrix = torch.from_numpy(scores)
    values, cols = torch.topk(matrix, take, dim=1, sorted=True)
    values, cols = values.numpy().copy(), cols.numpy().copy()
    # topk breaks ties arbitrarily: rows where the k-th value also occurs outside the selection
    # are re-selected exactly (rare with float scores).
    kth = values[:, -1]
    crowded = (matrix >= torch.from_numpy(kth)[:, None]).sum(dim=1).numpy() > take
    for row in np.flatnonzero(crowded & np.isfinite(kth)):
        order = np.lexsort((np.arange(n), -scores[row]))[:take]
        cols[row], values[row] = order, scores[row, order]
    rows = np.repeat(np.arange(b), take)
    cols, values = cols.reshape(-1), values.reshape(-1)
    keep = np.isfinite(values)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order].astype(np.int64), values[order]
    return rows, cols, values, _ranks_within(rows)


def _kernel_batch(
    user_ids: np.ndarray, cols: np.ndarray, scores: np.ndarray, ranks: np.ndarray, tweets: TweetTable,
    clusters: np.ndarray | None = None,
) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(user_ids, type=pa.int64()),
            pa.array(tweets.tweet_ids[cols], type=pa.int64()),
            pa.array(tweets.author_ids[cols], type=pa.int64()),
            pa.array(tweets.created_us[cols], type=pa.int64()),
            pa.array(scores.astype(np.float64), type=pa.float64()),
            pa.array(ranks, type=pa.int32()),
            pa.array(clusters, type=pa.int32()) if clusters is not None else pa.nulls(len(user_ids), pa.int32()),
        ],
        names=_KERNEL_SCHEMA.fieldNames(),
    )


def twhin_top_k(
    user_ids: np.ndarray,
    user_matrix: np.ndarray,
    tweets: TweetTable,
    tweet_matrix: np.ndarray,
    *,
    k: int,
    block_elements: int = DEFAULTS.block_elements,
) -> Iterator[pa.RecordBatch]:
    """Per user, the k tweets with the largest dot(user, tweet), the user's own tweets excluded;
    exact (a matrix product per block of users, then `top_k_per_row`). Yields `_KERNEL_SCHEMA`
    batches."""
    import torch

    n = len(tweets)
    if n == 0 or user_ids.shape[0] == 0:
        return
    by_author = np.argsort(tweets.author_ids, kind="stable")
    authors_sorted = tweets.author_ids[by_author]
    targets = torch.from_numpy(np.ascontiguousarray(tweet_matrix, dtype=np.float32)).T
    block = max(1, block_elements // n)
    for start in range(0, user_ids.shape[0], block):
        users = user_ids[start:start + block]
        vectors = torch.from_numpy(np.ascontiguousarray(user_matrix[start:start + block], dtype=np.float32))
        scores = (vectors @ targets).numpy()
        own_rows, own_cols = _expand_ranges(
            np.searchsorted(authors_sorted, users, side="left"), np.searchsorted(authors_sorted, users, side="right")
        )
        scores[own_rows, by_author[own_cols]] = -np.inf
        rows, cols, values, ranks = top_k_per_row(scores, k)
        yield _kernel_batch(users[rows], cols, values, ranks, tweets)


def _twhin_kernel(tweets: TweetTable, tweet_matrix: np.ndarray, k: int, block_elements: int):
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one Spark task per core
        try:
            for batch in batches:
                embeddings = batch.column("embedding")
                flat = np.asarray(pc.list_flatten(embeddings).to_numpy(zero_copy_only=False), dtype=np.float32)
                user_ids = np.asarray(batch.column("user_id").to_numpy(), dtype=np.int64)
                matrix = flat.reshape(user_ids.shape[0], -1) if user_ids.shape[0] else flat.reshape(0, 0)
                yield from twhin_top_k(user_ids, matrix, tweets, tweet_matrix, k=k, block_elements=block_elements)
        finally:
            torch.set_num_threads(threads)

    return run


def twhin_source(
    user_embeddings: DataFrame,
    tweet_embeddings: DataFrame,
    pool: DataFrame,
    *,
    config: CandidatesConfig = DEFAULTS,
) -> DataFrame:
    """The `twhin_top_k` pool tweets with the largest dot product between the user's and the
    tweet's TwHIN embeddings (own tweets excluded), exact. The pool's embedded tweets are collected
    to the driver once (ids + float32 matrix) and shipped with the task; users stream through
    `mapInArrow` in blocks (`twhin_top_k`)."""
    collected = (
        tweet_embeddings.join(pool, on="tweet_id", how="inner")
        .select("tweet_id", "author_id", F.unix_micros("created_at").alias("created_us"), "embedding")
        .toArrow()
        .sort_by("tweet_id")
    )
    if collected.num_rows == 0:
        return _empty_source(pool)
    tweets = TweetTable.from_arrow(collected)
    flat = pc.list_flatten(collected["embedding"].combine_chunks())
    tweet_matrix = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(tweets), -1)
    users = user_embeddings.select("user_id", "embedding")
    parallelism = users.sparkSession.sparkContext.defaultParallelism
    kernel = _twhin_kernel(tweets, tweet_matrix, config.twhin_top_k, config.block_elements)
    return _from_kernel(users.repartition(parallelism).mapInArrow(kernel, _KERNEL_SCHEMA))


@dataclass(frozen=True)
class ClusterIndex:
    """`simclusters_top_tweets_per_cluster` as CSR: the entries of cluster_ids[i] are
    [starts[i], starts[i + 1]) of (cols into `tweets`, scores)."""

    cluster_ids: np.ndarray
    starts: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    tweets: TweetTable

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "ClusterIndex":
        """From (cluster_id, tweet_id, score, author_id, created_us) rows."""
        tweet_rows = (
            table.select(["tweet_id", "author_id", "created_us"]).group_by(["tweet_id", "author_id", "created_us"])
            .aggregate([]).sort_by("tweet_id")
        )
        tweets = TweetTable.from_arrow(tweet_rows)
        entries = table.sort_by([("cluster_id", "ascending"), ("tweet_id", "ascending")])
        clusters = np.asarray(entries["cluster_id"].to_numpy(), dtype=np.int64)
        cluster_ids, first = np.unique(clusters, return_index=True)
        return cls(
            cluster_ids=cluster_ids,
            starts=np.r_[first, clusters.shape[0]].astype(np.int64),
            cols=np.searchsorted(tweets.tweet_ids, np.asarray(entries["tweet_id"].to_numpy(), dtype=np.int64)),
            scores=np.asarray(entries["score"].to_numpy(), dtype=np.float64),
            tweets=tweets,
        )


def simclusters_top_k(
    user_ids: np.ndarray,
    user_rows: np.ndarray,
    clusters: np.ndarray,
    weights: np.ndarray,
    index: ClusterIndex,
    *,
    k: int,
    block_elements: int = DEFAULTS.block_elements,
) -> Iterator[pa.RecordBatch]:
    """score(u, t) = sum over u's clusters c of weight(u, c) x index score(c, t); per user the k
    best tweets (ties by tweet id) with the cluster contributing most (ties by smaller cluster id).
    (user_rows, clusters, weights) are the users' clusters, user_rows indexing user_ids, sorted.
    Yields `_KERNEL_SCHEMA` batches."""
    n = len(index.tweets)
    position = np.searchsorted(index.cluster_ids, clusters).clip(0, max(index.cluster_ids.shape[0] - 1, 0))
    known = (index.cluster_ids.shape[0] > 0) & (index.cluster_ids[position] == clusters)
    user_rows, clusters, weights, position = user_rows[known], clusters[known], weights[known], position[known]
    lo, hi = index.starts[position], index.starts[position + 1]
    # Blocks of users whose expansion stays under block_elements entries (a user alone may exceed it).
    per_user = np.bincount(user_rows, weights=hi - lo, minlength=user_ids.shape[0]).astype(np.int64)
    cut = np.cumsum(per_user)
    start = 0
    while start < user_ids.shape[0]:
        base = cut[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(cut, base + block_elements, side="right")))
        a, b = np.searchsorted(user_rows, [start, end])
        owner, positions = _expand_ranges(lo[a:b], hi[a:b])
        entry_user = user_rows[a:b][owner]
        contribution = weights[a:b][owner] * index.scores[positions]
        entry_cluster = clusters[a:b][owner]
        key = entry_user.astype(np.int64) * n + index.cols[positions]
        if key.shape[0]:
            # Group the entries by (user, tweet); a stable sort keeps each user's cluster order, so
            # the sums are reproducible.
            order = np.argsort(key, kind="stable")
            key, contribution, entry_cluster = key[order], contribution[order], entry_cluster[order]
            first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            total = np.add.reduceat(contribution, first)
            # The cluster contributing most to each group, ties by the smaller cluster id.
            largest = np.repeat(np.maximum.reduceat(contribution, first), np.diff(np.r_[first, key.shape[0]]))
            best_cluster = np.minimum.reduceat(
                np.where(contribution == largest, entry_cluster, np.iinfo(np.int64).max), first
            )
            group_user, group_col = key[first] // n, key[first] % n
            # Each user's groups are a run in tweet order: a stable sort by score keeps ties by tweet id.
            bounds = np.flatnonzero(np.r_[True, group_user[1:] != group_user[:-1], True])
            chosen = np.concatenate([
                lo_ + np.argsort(-total[lo_:hi_], kind="stable")[:k] for lo_, hi_ in zip(bounds[:-1], bounds[1:])
            ])
            group_user = group_user[chosen]
            yield _kernel_batch(
                user_ids[group_user], group_col[chosen], total[chosen], _ranks_within(group_user), index.tweets,
                clusters=best_cluster[chosen],
            )
        start = end


def _simclusters_kernel(index: ClusterIndex, k: int, block_elements: int):
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            cluster_lists = batch.column("cluster_ids")
            yield from simclusters_top_k(
                np.asarray(batch.column("user_id").to_numpy(), dtype=np.int64),
                np.asarray(pc.list_parent_indices(cluster_lists).to_numpy(), dtype=np.int64),
                np.asarray(pc.list_flatten(cluster_lists).to_numpy(), dtype=np.int64),
                np.asarray(pc.list_flatten(batch.column("cluster_scores")).to_numpy(), dtype=np.float64),
                index,
                k=k,
                block_elements=block_elements,
            )

    return run


def simclusters_source(
    interested_in: DataFrame,
    top_tweets: DataFrame,
    pool: DataFrame,
    *,
    config: CandidatesConfig = DEFAULTS,
) -> DataFrame:
    """Tweets of the user's `simclusters_clusters` best InterestedIn clusters through the index
    (its first `simclusters_tweets_per_cluster` ranks, pool tweets only): score = sum over clusters
    of InterestedIn score x index score; cluster_id = the cluster contributing most. Top
    `simclusters_top_k` per user. The index is collected to the driver and shipped with the task."""
    collected = (
        top_tweets.where(F.col("rank") <= config.simclusters_tweets_per_cluster)
        .join(pool, on="tweet_id", how="inner")
        .select(
            F.col("cluster_id").cast("long"), "tweet_id", F.col("score").cast("double"), "author_id",
            F.unix_micros("created_at").alias("created_us"),
        )
        .toArrow()
    )
    if collected.num_rows == 0:
        return _empty_source(pool)
    index = ClusterIndex.from_arrow(collected)
    entry = F.struct(F.col("cluster_id").cast("long").alias("c"), F.col("score").cast("double").alias("s"))
    users = (
        _ranked_per_user(interested_in, order=[F.col("score").desc(), F.col("cluster_id")], k=config.simclusters_clusters)
        .groupBy("user_id")
        .agg(F.collect_list(entry).alias("_clusters"))
        .select(
            "user_id",
            F.transform("_clusters", lambda e: e["c"]).alias("cluster_ids"),
            F.transform("_clusters", lambda e: e["s"]).alias("cluster_scores"),
        )
    )
    kernel = _simclusters_kernel(index, config.simclusters_top_k, config.block_elements)
    return _from_kernel(users.mapInArrow(kernel, _KERNEL_SCHEMA))


def _from_kernel(df: DataFrame) -> DataFrame:
    return _as_source_rows(df.withColumn("tweet_created_at", F.timestamp_micros("created_us")))


def candidate_sources(
    inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> dict[str, DataFrame]:
    """{source name: rows of SOURCE_SCHEMA} for the sources in `config.sources`."""
    pool = tweet_pool(inputs.tweets, as_of=as_of, freshness_hours=config.freshness_hours)
    needs_followed = {"in_network", "uteg"} & set(config.sources)
    followed = (
        followed_authors(inputs.follows, inputs.realgraph, as_of=as_of, floor=config.realgraph_floor)
        if needs_followed else None
    )
    builders = {
        "in_network": lambda: in_network_source(followed, pool, as_of=as_of, config=config),
        "uteg": lambda: uteg_source(followed, inputs.engagements, pool, as_of=as_of, config=config),
        "simclusters": lambda: simclusters_source(
            inputs.simclusters_interested_in, inputs.simclusters_top_tweets_per_cluster, pool, config=config
        ),
        "twhin": lambda: twhin_source(
            inputs.twhin_user_embeddings, inputs.twhin_tweet_embeddings, pool, config=config
        ),
        "frs": lambda: frs_source(inputs.follow_graph_two_hop, pool, as_of=as_of, config=config),
        "popular": lambda: popular_source(
            inputs.users, inputs.engagements, inputs.simclusters_known_for, inputs.simclusters_interested_in,
            pool, as_of=as_of, config=config,
        ),
    }
    return {name: builders[name]() for name in SOURCES if name in config.sources}


# ---------------------------------------------------------------------------------------------
# Merge, filters, selection
# ---------------------------------------------------------------------------------------------

def merge_sources(sources: Mapping[str, DataFrame], *, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """One row per (user_id, tweet_id) with every source that produced it: `sources` (sorted),
    `<source>_score` and `<source>_rank` (null where absent), `simclusters_cluster_id`, the union
    of uteg and frs proofs (uteg's first, deduplicated, at most max_proofs) with its size before
    truncation (at least frs's own social_proof_count, whose list the two-hop job truncated), and
    `_interleave` = min over sources of rank / that source's cap."""
    if not sources:
        raise ValueError("merge_sources needs at least one source")
    caps = config.source_caps()
    rows = None
    for name, df in sources.items():
        tagged = df.select(
            *SOURCE_SCHEMA.fieldNames(), F.lit(name).alias("source"),
            (F.col("rank") / F.lit(float(caps[name]))).alias("_share"),
        )
        rows = tagged if rows is None else rows.unionByName(tagged)
    is_source = lambda name: F.col("source") == name  # noqa: E731
    merged = (
        # Partitioned by user once: the aggregation, the viewer join and the per-user window reuse it.
        rows.repartition("user_id")
        .groupBy("user_id", "tweet_id")
        .agg(
            F.first("author_id").alias("author_id"),
            F.first("tweet_created_at").alias("tweet_created_at"),
            F.array_sort(F.collect_list("source")).alias("sources"),
            *[F.max(F.when(is_source(s), F.col("score"))).alias(f"{s}_score") for s in SOURCES],
            *[F.min(F.when(is_source(s), F.col("rank"))).alias(f"{s}_rank") for s in SOURCES],
            F.max(F.when(is_source("simclusters"), F.col("cluster_id"))).alias("simclusters_cluster_id"),
            F.first(F.when(is_source("uteg"), F.col("proof_user_ids")), ignorenulls=True).alias("_uteg_proofs"),
            F.first(F.when(is_source("frs"), F.col("proof_user_ids")), ignorenulls=True).alias("_frs_proofs"),
            F.max(F.when(is_source("frs"), F.col("proof_count"))).alias("_frs_count"),
            F.min("_share").alias("_interleave"),
        )
    )
    no_proofs = F.array().cast("array<bigint>")
    proofs = F.array_distinct(F.concat(
        F.coalesce(F.col("_uteg_proofs"), no_proofs), F.coalesce(F.col("_frs_proofs"), no_proofs)
    ))
    return (
        merged.withColumn("_proofs", proofs)
        .withColumn("social_proof_user_ids", F.slice("_proofs", 1, config.max_proofs))
        .withColumn(
            "social_proof_count",
            F.greatest(F.size("_proofs"), F.coalesce(F.col("_frs_count"), F.lit(0))).cast("int"),
        )
        .drop("_proofs", "_uteg_proofs", "_frs_proofs", "_frs_count")
    )


def tag_filters(merged: DataFrame, viewer: DataFrame, *, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """`merged` plus `is_in_network` (the user follows the author at T) and `filtered_by`: the
    first of FILTERS the row fails, null when it is kept. `viewer` is `viewer_context(...)`."""
    contains = lambda array, value: F.coalesce(F.array_contains(F.col(array), F.col(value)), F.lit(False))  # noqa: E731
    reason = (
        F.when(F.col("author_id") == F.col("user_id"), F.lit("self_tweet"))
        .when(contains("hidden_author_ids", "author_id"), F.lit("blocked_or_muted"))
    )
    if config.exclude_seen:
        reason = reason.when(contains("seen_tweet_ids", "tweet_id"), F.lit("previously_seen"))
    return (
        merged.join(viewer, on="user_id", how="left")
        .withColumn("is_in_network", contains("followed_ids", "author_id"))
        .withColumn("filtered_by", reason)
        .drop("followed_ids", "hidden_author_ids", "seen_tweet_ids")
    )


def select_candidates(tagged: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """The kept rows of `tag_filters(...)`, at most `max_candidates_per_user` per user in the
    interleaving order (min over sources of rank / cap, ties by tweet id) as `pool_rank`; the
    `CANDIDATES_SCHEMA` columns."""
    window = Window.partitionBy("user_id").orderBy(F.col("_interleave"), F.col("tweet_id"))
    kept = (
        tagged.where(F.col("filtered_by").isNull())
        .withColumn("pool_rank", F.row_number().over(window))
        .where(F.col("pool_rank") <= config.max_candidates_per_user)
        .withColumn("built_at", F.lit(as_of))
    )
    return kept.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in CANDIDATES_SCHEMA.fields])


def build_candidates(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """The `candidates` table: every source, merged, filtered, capped (rows of CANDIDATES_SCHEMA)."""
    merged = merge_sources(candidate_sources(inputs, as_of=as_of, config=config), config=config)
    viewer = viewer_context(inputs.follows, inputs.social_actions, inputs.engagements, as_of=as_of, config=config)
    return select_candidates(tag_filters(merged, viewer, config=config), as_of=as_of, config=config)


# ---------------------------------------------------------------------------------------------
# Counts for the asset's metadata (aggregate expressions for `DataFrame.observe`)
# ---------------------------------------------------------------------------------------------

def _count(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


def retrieval_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over `tag_filters(...)` rows: `retrieved_<source>` (rows each source produced), `removed_<filter>`
    (rows each filter removed first), `passed_filters`."""
    return (
        [_count(F.col(f"{s}_rank").isNotNull()).alias(f"retrieved_{s}") for s in SOURCES if s in config.sources]
        + [_count(F.col("filtered_by") == F.lit(f)).alias(f"removed_{f}") for f in FILTERS]
        + [_count(F.col("filtered_by").isNull()).alias("passed_filters")]
    )


def kept_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over the `candidates` rows: `kept_<source>`, `rows`, `users`."""
    return (
        [_count(F.col(f"{s}_rank").isNotNull()).alias(f"kept_{s}") for s in SOURCES if s in config.sources]
        + [F.count(F.lit(1)).alias("rows"), _count(F.col("pool_rank") == 1).alias("users")]
    )
