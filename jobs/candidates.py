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

Shape of the job, as a batch of Home Mixer requests:

1. `tweet_pool`: tweets created in [T - freshness, T], not deleted at or before T. Every source
   retrieves from it (tweet-level eligibility: stale, future and deleted tweets never enter).
2. `collect_indexes` (driver): the candidate stores, small enough to ship to every task:
   author -> pool tweets (in_network, frs), engager -> engaged tweets (uteg), cluster -> tweets
   (simclusters), community -> popular tweets (popular), the pool's TwHIN matrix (twhin).
3. `candidate_requests` (Spark): one row per user with the query-side inputs: followed accounts
   and their RealGraph weights, two-hop accounts, InterestedIn clusters, the TwHIN vector, blocked
   and muted accounts, tweets already seen.
4. One `mapInArrow` over the requests, per block of users: every source (`retrieve_block`), then
   `merge_block`: one row per (user, tweet) keeping every source, the viewer filters (own tweet,
   blocked or muted author, previously seen), the interleaved total cap. Nothing is shuffled after
   the requests are built: the pool of ~1,000 candidates per user never leaves the task that
   computes it until it is written.

Spark code builds the requests and the indexes; numpy (and torch for the TwHIN matrix product)
runs the per-user pipeline. Defaults live in `CandidatesConfig`; docs/candidates.md describes the
table and the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

SOURCES = ("in_network", "uteg", "simclusters", "twhin", "frs", "popular")
# Viewer-level filters, in the order they are checked (cheapest first); a removed row carries the
# name of the first one it fails in `filtered_by`, or `total_cap` when it passed them all but fell
# beyond `max_candidates_per_user`.
FILTERS = ("self_tweet", "blocked_or_muted", "previously_seen")
REMOVAL_REASONS = FILTERS + ("total_cap",)
ENGAGEMENT_ACTIONS = ("like", "retweet", "reply", "quote")
HIDING_SOCIAL_ACTIONS = ("block", "mute")
# The popular index's key for the global list (community keys are cluster ids, >= 0).
GLOBAL_COMMUNITY = -1


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
    # --- execution ---
    # Users processed together inside a task, and the most TwHIN scores (users x pool tweets)
    # held at once.
    block_users: int = 512
    twhin_block_scores: int = 16_000_000

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

# What the kernel writes: the table's columns (the creation time as microseconds, no built_at)
# for every merged row, removed ones included (`filtered_by` set, `pool_rank` null).
_TAGGED_SCHEMA = T.StructType(
    [T.StructField(f.name, f.dataType, f.nullable or f.name == "pool_rank")
     for f in CANDIDATES_SCHEMA.fields if f.name not in ("tweet_created_at", "built_at")]
    + [T.StructField("created_us", T.LongType(), False), T.StructField("filtered_by", T.StringType(), True)]
)

# One source's rows before the merge (`retrieved_candidates`, for inspection and tests).
_RETRIEVED_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False),
    T.StructField("user_id", T.LongType(), False),
    T.StructField("tweet_id", T.LongType(), False),
    T.StructField("author_id", T.LongType(), False),
    T.StructField("created_us", T.LongType(), False),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("cluster_id", T.IntegerType(), True),
    T.StructField("proof_user_ids", T.ArrayType(T.LongType()), True),
    T.StructField("proof_count", T.IntegerType(), True),
])


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
# Spark helpers
# ---------------------------------------------------------------------------------------------

def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _age_hours(column: str, as_of: datetime) -> Column:
    return (F.lit(_micros(as_of)) - F.unix_micros(F.col(column))) / F.lit(3.6e9)


def _between(column: str, start: datetime, end: datetime) -> Column:
    return (F.col(column) >= F.lit(start)) & (F.col(column) <= F.lit(end))


def _ranked_per_user(df: DataFrame, *, order: list[Column], k: int) -> DataFrame:
    window = Window.partitionBy("user_id").orderBy(*order)
    return df.withColumn("_position", F.row_number().over(window)).where(F.col("_position") <= k).drop("_position")


def _per_user_arrays(df: DataFrame, sort_key: Column, columns: dict[str, Column]) -> DataFrame:
    """One row per user: `columns` as arrays, aligned, ordered by `sort_key` (ascending)."""
    entry = F.struct(sort_key.alias("_key"), *[c.alias(name) for name, c in columns.items()])
    return (
        df.groupBy("user_id")
        # sort_array, not array_sort, whose default comparator is an interpreted lambda (11x slower
        # on 6M entries); the entries are never null, where the two would order differently.
        .agg(F.sort_array(F.collect_list(entry)).alias("_entries"))
        # A field of an array of structs is the array of that field: compiled, where F.transform
        # is interpreted (and Spark 4.2 reads its SQL conf again for every element it touches).
        .select("user_id", *[F.col("_entries")[name].alias(name) for name in columns])
    )


# ---------------------------------------------------------------------------------------------
# The tweet pool, the requests
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
    return tweets.agg(
        _count(future).alias("future"),
        _count(~future & stale).alias("stale"),
        _count(~future & ~stale & deleted).alias("deleted"),
        _count(~future & ~stale & ~deleted).alias("eligible"),
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


def candidate_requests(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """One row per user who exists at as_of, with everything the per-user pipeline reads (arrays,
    null when the user has none):

    - followed_ids, followed_weights: accounts followed at as_of and their RealGraph weights;
    - two_hop_ids, two_hop_counts, two_hop_proofs: the `frs_accounts` best two-hop accounts, by rank;
    - cluster_ids, cluster_scores: the best InterestedIn clusters, by score then id (as many as
      simclusters and popular read);
    - embedding: the TwHIN user vector;
    - hidden_author_ids: accounts blocked or muted at or before as_of;
    - seen_tweet_ids: tweets with a `seen_actions` engagement at or before as_of, from the
      freshness window (an engagement is never older than its tweet, so only those can be in
      the pool); empty unless `exclude_seen`.
    """
    users = inputs.users.where(F.col("created_at") <= F.lit(as_of)).select(F.col("user_id").cast("long"))
    followed = _per_user_arrays(
        followed_authors(inputs.follows, inputs.realgraph, as_of=as_of, floor=config.realgraph_floor),
        F.col("author_id"),
        {"followed_ids": F.col("author_id"), "followed_weights": F.col("weight")},
    )
    two_hop = _per_user_arrays(
        inputs.follow_graph_two_hop.where(F.col("rank") <= config.frs_accounts),
        F.col("rank"),
        {
            "two_hop_ids": F.col("candidate_id").cast("long"),
            "two_hop_counts": F.col("social_proof_count").cast("int"),
            "two_hop_proofs": F.col("proof_user_ids").cast("array<bigint>"),
        },
    )
    clusters = _per_user_arrays(
        _ranked_per_user(
            inputs.simclusters_interested_in,
            order=[F.col("score").desc(), F.col("cluster_id")],
            k=max(config.simclusters_clusters, config.popular_user_communities),
        ),
        F.struct((-F.col("score")).alias("s"), F.col("cluster_id").alias("c")),
        {"cluster_ids": F.col("cluster_id").cast("long"), "cluster_scores": F.col("score").cast("double")},
    )
    embeddings = inputs.twhin_user_embeddings.select(F.col("user_id").cast("long"), "embedding")
    hidden = (
        inputs.social_actions.where(
            F.col("action").isin(*HIDING_SOCIAL_ACTIONS) & (F.col("created_at") <= F.lit(as_of))
        )
        .groupBy("user_id")
        .agg(F.collect_set(F.col("target_user_id").cast("long")).alias("hidden_author_ids"))
    )
    requests = (
        users.join(followed, on="user_id", how="left")
        .join(two_hop, on="user_id", how="left")
        .join(clusters, on="user_id", how="left")
        .join(embeddings, on="user_id", how="left")
        .join(hidden, on="user_id", how="left")
    )
    if config.exclude_seen:
        seen = (
            inputs.engagements.where(
                F.col("action").isin(*config.seen_actions)
                & _between("created_at", as_of - timedelta(hours=config.freshness_hours), as_of)
            )
            .groupBy("user_id")
            .agg(F.collect_set(F.col("tweet_id").cast("long")).alias("seen_tweet_ids"))
        )
        requests = requests.join(seen, on="user_id", how="left")
    else:
        requests = requests.withColumn("seen_tweet_ids", F.lit(None).cast("array<bigint>"))
    return requests.select(
        "user_id", "followed_ids", "followed_weights", "two_hop_ids", "two_hop_counts", "two_hop_proofs",
        "cluster_ids", "cluster_scores", "embedding", "hidden_author_ids", "seen_tweet_ids",
    )


# ---------------------------------------------------------------------------------------------
# The candidate stores (collected to the driver, shipped with the task)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TweetTable:
    """The pool's tweets, sorted by tweet id; a candidate is a column (position) in it, so column
    order is tweet id order (the tie order everywhere)."""

    tweet_ids: np.ndarray
    author_ids: np.ndarray
    created_us: np.ndarray

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "TweetTable":
        table = table.sort_by("tweet_id")
        return cls(
            tweet_ids=np.asarray(table["tweet_id"].to_numpy(), dtype=np.int64),
            author_ids=np.asarray(table["author_id"].to_numpy(), dtype=np.int64),
            created_us=np.asarray(table["created_us"].to_numpy(), dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.tweet_ids.shape[0])

    def columns_of(self, tweet_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the ids that are in the pool, which of `tweet_ids` those are)."""
        return _lookup(self.tweet_ids, np.asarray(tweet_ids, dtype=np.int64))


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in `sorted_keys` of the queries found there, which queries were found)."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(queries.shape[0], dtype=bool)
    position = np.searchsorted(sorted_keys, queries).clip(0, sorted_keys.shape[0] - 1)
    found = sorted_keys[position] == queries
    return position[found], found


@dataclass(frozen=True)
class SparseIndex:
    """key -> (tweet column, score) lists, as CSR: entries of keys[i] are [starts[i], starts[i+1])."""

    keys: np.ndarray
    starts: np.ndarray
    cols: np.ndarray
    scores: np.ndarray

    @classmethod
    def build(cls, keys: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> "SparseIndex":
        keys, cols = np.asarray(keys, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        order = np.lexsort((cols, keys))
        keys, cols, scores = keys[order], cols[order], np.asarray(scores, dtype=np.float64)[order]
        unique, first = np.unique(keys, return_index=True)
        return cls(keys=unique, starts=np.r_[first, keys.shape[0]].astype(np.int64), cols=cols, scores=scores)

    @classmethod
    def empty(cls) -> "SparseIndex":
        nothing = np.zeros(0, dtype=np.int64)
        return cls(keys=nothing, starts=np.zeros(1, dtype=np.int64), cols=nothing, scores=np.zeros(0))

    def ranges(self, key_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each key's entries (empty for unknown keys)."""
        if self.keys.shape[0] == 0:
            zero = np.zeros(key_ids.shape[0], dtype=np.int64)
            return zero, zero
        position = np.searchsorted(self.keys, key_ids).clip(0, self.keys.shape[0] - 1)
        known = self.keys[position] == key_ids
        lo, hi = self.starts[position], self.starts[position + 1]
        return np.where(known, lo, 0), np.where(known, hi, 0)


@dataclass(frozen=True)
class CandidateIndexes:
    as_of_us: int
    tweets: TweetTable
    in_network: SparseIndex  # author -> pool tweets of the in-network window, score = recency decay
    frs: SparseIndex  # author -> pool tweets of the frs window, score = recency decay
    uteg: SparseIndex  # engager -> pool tweets engaged in the window, score 1
    simclusters: SparseIndex  # cluster -> indexed pool tweets, score = index score
    popular: SparseIndex  # GLOBAL_COMMUNITY and cluster -> popular pool tweets, score = popularity
    # twhin: pool columns with an embedding (ascending), their vectors, and those columns ordered
    # by author (to exclude a user's own tweets).
    twhin_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    twhin_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    twhin_by_author: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def popular_tweet_scores(
    engagements: DataFrame, pool: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """(tweet_id, author_id, score): pool tweets from the last `popular_window_hours`, score = sum
    over their `popular_actions` engagements at or before as_of of
    0.5 ** (engagement age / popular_half_life_hours)."""
    start = as_of - timedelta(hours=config.popular_window_hours)
    recent = pool.where(F.col("created_at") >= F.lit(start)).select("tweet_id", "author_id")
    weighted = engagements.where(
        F.col("action").isin(*config.popular_actions) & _between("created_at", start, as_of)
    ).select("tweet_id", F.pow(F.lit(0.5), _age_hours("created_at", as_of) / F.lit(config.popular_half_life_hours)).alias("w"))
    return weighted.join(recent, on="tweet_id", how="inner").groupBy("tweet_id", "author_id").agg(F.sum("w").alias("score"))


def popular_index(
    tweet_ids: np.ndarray, author_ids: np.ndarray, scores: np.ndarray, known_for: pa.Table,
    tweets: TweetTable, *, config: CandidatesConfig = DEFAULTS,
) -> SparseIndex:
    """GLOBAL_COMMUNITY -> the `popular_global_k` best tweets; each community (the author's KnownFor
    cluster) -> its `popular_per_community_k` best, less the global ones (a tweet has one community,
    so a user's lists then never repeat a tweet). Best = score, ties by tweet id."""
    global_pick = np.lexsort((tweet_ids, -scores))[:config.popular_global_k]
    producers = np.asarray(known_for["producer_id"].to_numpy(), dtype=np.int64)
    by_producer = np.argsort(producers, kind="stable")
    position, has_community = _lookup(producers[by_producer], author_ids)
    community = np.full(author_ids.shape[0], -1, dtype=np.int64)
    community[has_community] = np.asarray(known_for["cluster_id"].to_numpy(), dtype=np.int64)[by_producer][position]
    candidates = np.flatnonzero(has_community)
    candidates = candidates[np.lexsort((tweet_ids[candidates], -scores[candidates], community[candidates]))]
    ranks = _ranks_within(community[candidates])
    community_pick = candidates[ranks <= config.popular_per_community_k]
    community_pick = community_pick[~np.isin(community_pick, global_pick)]
    picked = np.r_[global_pick, community_pick]
    keys = np.r_[np.full(global_pick.shape[0], GLOBAL_COMMUNITY), community[community_pick]]
    cols, found = tweets.columns_of(tweet_ids[picked])
    return SparseIndex.build(keys[found], cols, scores[picked][found])


def collect_indexes(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> CandidateIndexes:
    """The candidate stores, collected to the driver (Spark jobs run here)."""
    now = _micros(as_of)
    pool = tweet_pool(inputs.tweets, as_of=as_of, freshness_hours=config.freshness_hours)
    tweets = TweetTable.from_arrow(
        pool.select("tweet_id", "author_id", F.unix_micros("created_at").alias("created_us")).toArrow()
    )
    columns = np.arange(len(tweets), dtype=np.int64)
    age_hours = (now - tweets.created_us) / 3.6e9
    decay = 0.5 ** (age_hours / config.recency_half_life_hours)

    def recent_by_author(window_hours: float) -> SparseIndex:
        recent = age_hours <= window_hours
        return SparseIndex.build(tweets.author_ids[recent], columns[recent], decay[recent])

    wanted = set(config.sources)
    indexes = dict(
        in_network=recent_by_author(config.in_network_window_hours) if "in_network" in wanted else SparseIndex.empty(),
        frs=recent_by_author(config.frs_window_hours) if "frs" in wanted else SparseIndex.empty(),
        uteg=SparseIndex.empty(), simclusters=SparseIndex.empty(), popular=SparseIndex.empty(),
    )
    if "uteg" in wanted:
        engaged = (
            inputs.engagements.where(
                F.col("action").isin(*config.uteg_actions)
                & _between("created_at", as_of - timedelta(hours=config.uteg_window_hours), as_of)
            )
            .select(F.col("user_id").alias("engager_id"), "tweet_id")
            .distinct()
            .toArrow()
        )
        cols, found = tweets.columns_of(np.asarray(engaged["tweet_id"].to_numpy(), dtype=np.int64))
        engagers = np.asarray(engaged["engager_id"].to_numpy(), dtype=np.int64)[found]
        indexes["uteg"] = SparseIndex.build(engagers, cols, np.ones(cols.shape[0]))
    if "simclusters" in wanted:
        index = (
            inputs.simclusters_top_tweets_per_cluster.where(F.col("rank") <= config.simclusters_tweets_per_cluster)
            .select(F.col("cluster_id").cast("long"), "tweet_id", F.col("score").cast("double"))
            .toArrow()
        )
        cols, found = tweets.columns_of(np.asarray(index["tweet_id"].to_numpy(), dtype=np.int64))
        indexes["simclusters"] = SparseIndex.build(
            np.asarray(index["cluster_id"].to_numpy(), dtype=np.int64)[found], cols,
            np.asarray(index["score"].to_numpy(), dtype=np.float64)[found],
        )
    if "popular" in wanted:
        scores = popular_tweet_scores(inputs.engagements, pool, as_of=as_of, config=config).toArrow()
        known_for = inputs.simclusters_known_for.select(
            F.col("producer_id").cast("long"), F.col("cluster_id").cast("long")
        ).toArrow()
        indexes["popular"] = popular_index(
            np.asarray(scores["tweet_id"].to_numpy(), dtype=np.int64),
            np.asarray(scores["author_id"].to_numpy(), dtype=np.int64),
            np.asarray(scores["score"].to_numpy(), dtype=np.float64),
            known_for, tweets, config=config,
        )
    twhin_cols, twhin_matrix = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    if "twhin" in wanted:
        embedded = inputs.twhin_tweet_embeddings.join(pool.select("tweet_id"), on="tweet_id", how="left_semi").toArrow()
        if embedded.num_rows:
            twhin_cols, found = tweets.columns_of(np.asarray(embedded["tweet_id"].to_numpy(), dtype=np.int64))
            flat = pc.list_flatten(embedded["embedding"].combine_chunks())
            matrix = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(embedded.num_rows, -1)
            order = np.argsort(twhin_cols)
            twhin_cols, twhin_matrix = twhin_cols[order], np.ascontiguousarray(matrix[found][order])
    return CandidateIndexes(
        as_of_us=now, tweets=tweets, twhin_cols=twhin_cols, twhin_matrix=twhin_matrix,
        twhin_by_author=np.argsort(tweets.author_ids[twhin_cols], kind="stable"), **indexes,
    )


# ---------------------------------------------------------------------------------------------
# Per-user pipeline (numpy): requests in blocks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lists:
    """A list column of a block of users: `rows[i]` is the user (row in the block) of `values[i]`;
    rows ascending, each user's values in list order."""

    rows: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, column: pa.Array, dtype) -> "Lists":
        return cls(
            rows=np.asarray(pc.list_parent_indices(column).to_numpy(), dtype=np.int64),
            values=np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=dtype),
        )


def _aligned(column: pa.Array, dtype) -> np.ndarray:
    return np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=dtype)


@dataclass(frozen=True)
class RequestBlock:
    """A block of `candidate_requests` rows as numpy arrays."""

    user_ids: np.ndarray
    followed: Lists
    followed_weights: np.ndarray
    two_hop: Lists
    two_hop_counts: np.ndarray
    two_hop_proof_offsets: np.ndarray  # len(two_hop.values) + 1, into two_hop_proof_ids
    two_hop_proof_ids: np.ndarray
    clusters: Lists
    cluster_scores: np.ndarray
    embedded_rows: np.ndarray  # rows with a TwHIN vector
    embeddings: np.ndarray  # (len(embedded_rows), d) float32
    hidden: Lists
    seen: Lists

    @classmethod
    def from_arrow(cls, batch: pa.RecordBatch | pa.Table) -> "RequestBlock":
        column = batch.column
        proofs = pc.list_flatten(column("two_hop_proofs"))
        lengths = np.asarray(pc.list_value_length(proofs).fill_null(0).to_numpy(), dtype=np.int64)
        embedding = column("embedding")
        valid = np.asarray(embedding.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        rows = np.flatnonzero(valid)
        flat = _aligned(embedding, np.float32)
        return cls(
            user_ids=np.asarray(column("user_id").to_numpy(), dtype=np.int64),
            followed=Lists.of(column("followed_ids"), np.int64),
            followed_weights=_aligned(column("followed_weights"), np.float64),
            two_hop=Lists.of(column("two_hop_ids"), np.int64),
            two_hop_counts=_aligned(column("two_hop_counts"), np.int64),
            two_hop_proof_offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            two_hop_proof_ids=_aligned(proofs, np.int64),
            clusters=Lists.of(column("cluster_ids"), np.int64),
            cluster_scores=_aligned(column("cluster_scores"), np.float64),
            embedded_rows=rows,
            embeddings=flat.reshape(rows.shape[0], -1) if rows.shape[0] else np.zeros((0, 0), dtype=np.float32),
            hidden=Lists.of(column("hidden_author_ids"), np.int64),
            seen=Lists.of(column("seen_tweet_ids"), np.int64),
        )

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])


def _request_blocks(batch: pa.RecordBatch, block_users: int) -> Iterator[RequestBlock]:
    for start in range(0, batch.num_rows, block_users):
        yield RequestBlock.from_arrow(batch.slice(start, block_users))


@dataclass(frozen=True)
class Retrieved:
    """One source's candidates for a block of users, ordered by user then rank."""

    source: str
    user_rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    clusters: np.ndarray | None = None  # simclusters: the cluster contributing most
    proof_offsets: np.ndarray | None = None  # uteg, frs: proofs of row i are ids[offsets[i]:offsets[i+1]]
    proof_ids: np.ndarray | None = None
    proof_counts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user_rows.shape[0])


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo_i, hi_i): (owner i of each position, the positions), concatenated."""
    lengths = hi - lo
    owner = np.repeat(np.arange(lo.shape[0]), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - offsets[owner] + lo[owner]
    return owner, positions


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) if sorted_values.shape[0] \
        else np.zeros(0, dtype=np.int64)


def _ranks_within(rows: np.ndarray) -> np.ndarray:
    """1-based position of each element within its run of equal `rows` (rows sorted)."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int32)
    starts = _run_starts(rows)
    run_start = np.repeat(starts, np.diff(np.r_[starts, rows.shape[0]]))
    return (np.arange(rows.shape[0]) - run_start + 1).astype(np.int32)


def _best_per_user(user_rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of each user's k best (score descending; among ties the earlier position), for
    `user_rows` ascending with each user's entries in tweet order; returned by user then rank."""
    bounds = np.flatnonzero(np.r_[True, user_rows[1:] != user_rows[:-1], True]) if user_rows.shape[0] \
        else np.zeros(1, dtype=np.int64)
    picks = [lo + np.argsort(-scores[lo:hi], kind="stable")[:k] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class SparseSelection:
    """`sparse_top_k`'s result: the selected (user, tweet) groups, by user then rank."""

    user_rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    best_keys: np.ndarray  # position (in the key arrays) of the largest contribution
    contributor_offsets: np.ndarray  # contributors of group i: contributor_keys[offsets[i]:offsets[i+1]]
    contributor_keys: np.ndarray  # key positions, in key order


def sparse_top_k(
    key_rows: np.ndarray, key_ids: np.ndarray, key_weights: np.ndarray, index: SparseIndex, n_cols: int, *, k: int
) -> SparseSelection:
    """score(user, tweet) = sum over the user's keys of weight x the key's index score for the tweet;
    each user's k best tweets (ties by tweet column). `key_rows` ascending. The largest contribution
    names `best_keys` (ties: the smaller key id); `contributor_keys` lists every contributing key,
    in the order the keys are given."""
    lo, hi = index.ranges(key_ids)
    owner, positions = _expand_ranges(lo, hi)
    if positions.shape[0] == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return SparseSelection(nothing, nothing, np.zeros(0), nothing.astype(np.int32), nothing,
                               np.zeros(1, dtype=np.int64), nothing)
    group_key = key_rows[owner] * n_cols + index.cols[positions]
    contribution = key_weights[owner] * index.scores[positions]
    # Stable: within a (user, tweet) group the entries stay in key order, so sums are reproducible.
    order = np.argsort(group_key, kind="stable")
    group_key, contribution, owner = group_key[order], contribution[order], owner[order]
    first = _run_starts(group_key)
    sizes = np.diff(np.r_[first, group_key.shape[0]])
    totals = np.add.reduceat(contribution, first)
    largest = np.repeat(np.maximum.reduceat(contribution, first), sizes)
    top_key_id = np.minimum.reduceat(np.where(contribution == largest, key_ids[owner], np.iinfo(np.int64).max), first)
    is_best = (contribution == largest) & (key_ids[owner] == np.repeat(top_key_id, sizes))
    best_entry = np.minimum.reduceat(np.where(is_best, np.arange(owner.shape[0]), np.iinfo(np.int64).max), first)
    users, cols = group_key[first] // n_cols, group_key[first] % n_cols
    chosen = _best_per_user(users, totals, k)
    contributor_owner, contributor_positions = _expand_ranges(first[chosen], first[chosen] + sizes[chosen])
    return SparseSelection(
        user_rows=users[chosen],
        cols=cols[chosen],
        scores=totals[chosen],
        ranks=_ranks_within(users[chosen]),
        best_keys=owner[best_entry[chosen]],
        contributor_offsets=np.r_[0, np.cumsum(sizes[chosen])].astype(np.int64),
        contributor_keys=owner[contributor_positions],
    )


def top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of each row of a (b, n) score matrix, ties by column (lowest first), -inf never
    selected: (rows, cols, values, ranks), ordered by row then rank."""
    import torch

    b, n = scores.shape
    take = min(k, n)
    if b == 0 or take == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty.astype(np.int32)
    # One more than needed: topk breaks ties arbitrarily, so a row whose k-th and (k+1)-th values
    # are equal is re-selected exactly (rare with float scores).
    values, cols = torch.topk(torch.from_numpy(scores), min(take + 1, n), dim=1, sorted=True)
    values, cols, spare = values.numpy()[:, :take].copy(), cols.numpy()[:, :take].copy(), values.numpy()[:, take:]
    crowded = (values[:, -1] == spare[:, 0]) if spare.shape[1] else np.zeros(b, dtype=bool)
    for row in np.flatnonzero(crowded & np.isfinite(values[:, -1])):
        order = np.lexsort((np.arange(n), -scores[row]))[:take]
        cols[row], values[row] = order, scores[row, order]
    rows = np.repeat(np.arange(b), take)
    cols, values = cols.reshape(-1), values.reshape(-1)
    keep = np.isfinite(values)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order].astype(np.int64), values[order]
    return rows, cols, values, _ranks_within(rows)


# --- the sources -------------------------------------------------------------------------------

def in_network_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of followed accounts from the in-network window: RealGraph weight x recency decay."""
    s = sparse_top_k(block.followed.rows, block.followed.values, block.followed_weights, indexes.in_network,
                     len(indexes.tweets), k=config.in_network_top_k)
    return Retrieved("in_network", s.user_rows, s.cols, s.scores, s.ranks)


def uteg_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets the user's `uteg_followees` strongest followees (weight, ties by id) engaged with:
    score = sum of their weights; proofs = those followees, strongest first."""
    followed = block.followed
    order = np.lexsort((followed.values, -block.followed_weights, followed.rows))
    keep = order[_ranks_within(followed.rows[order]) <= config.uteg_followees]
    ids, weights = followed.values[keep], block.followed_weights[keep]
    s = sparse_top_k(followed.rows[keep], ids, weights, indexes.uteg, len(indexes.tweets), k=config.uteg_top_k)
    return Retrieved("uteg", s.user_rows, s.cols, s.scores, s.ranks, proof_offsets=s.contributor_offsets,
                     proof_ids=ids[s.contributor_keys], proof_counts=np.diff(s.contributor_offsets))


def simclusters_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of the user's `simclusters_clusters` best clusters: sum of InterestedIn x index score;
    the cluster contributing most (ties: smaller id) is kept."""
    clusters = block.clusters
    keep = _ranks_within(clusters.rows) <= config.simclusters_clusters
    ids = clusters.values[keep]
    s = sparse_top_k(clusters.rows[keep], ids, block.cluster_scores[keep], indexes.simclusters,
                     len(indexes.tweets), k=config.simclusters_top_k)
    return Retrieved("simclusters", s.user_rows, s.cols, s.scores, s.ranks, clusters=ids[s.best_keys])


def frs_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of the user's best two-hop accounts from the frs window: social proof count x recency
    decay; proofs = the two-hop proof users."""
    two_hop = block.two_hop
    keep = _ranks_within(two_hop.rows) <= config.frs_accounts
    positions = np.flatnonzero(keep)
    s = sparse_top_k(two_hop.rows[keep], two_hop.values[keep], block.two_hop_counts[keep].astype(np.float64),
                     indexes.frs, len(indexes.tweets), k=config.frs_top_k)
    account = positions[s.best_keys]  # one author per tweet: the only contributor
    lo, hi = block.two_hop_proof_offsets[account], block.two_hop_proof_offsets[account + 1]
    _, proof_positions = _expand_ranges(lo, hi)
    return Retrieved("frs", s.user_rows, s.cols, s.scores, s.ranks,
                     proof_offsets=np.r_[0, np.cumsum(hi - lo)].astype(np.int64),
                     proof_ids=block.two_hop_proof_ids[proof_positions], proof_counts=block.two_hop_counts[account])


def popular_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """The global popular list for every user, plus the lists of the user's
    `popular_user_communities` best clusters; score = the tweet's popularity."""
    clusters = block.clusters
    keep = _ranks_within(clusters.rows) <= config.popular_user_communities
    users = np.arange(len(block), dtype=np.int64)
    rows = np.r_[users, clusters.rows[keep]]
    ids = np.r_[np.full(users.shape[0], GLOBAL_COMMUNITY, dtype=np.int64), clusters.values[keep]]
    order = np.argsort(rows, kind="stable")
    s = sparse_top_k(rows[order], ids[order], np.ones(rows.shape[0]), indexes.popular, len(indexes.tweets),
                     k=config.popular_top_k)
    return Retrieved("popular", s.user_rows, s.cols, s.scores, s.ranks)


def twhin_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """The `twhin_top_k` pool tweets with the largest dot(user vector, tweet vector), the user's own
    tweets excluded; exact: one matrix product per sub-block of users, then `top_k_per_row`."""
    import torch

    n = indexes.twhin_cols.shape[0]
    parts: list[tuple[np.ndarray, ...]] = []
    if n and block.embedded_rows.shape[0]:
        by_author = indexes.twhin_by_author
        authors_sorted = indexes.tweets.author_ids[indexes.twhin_cols][by_author]
        targets = torch.from_numpy(indexes.twhin_matrix).T
        step = max(1, config.twhin_block_scores // n)
        for start in range(0, block.embedded_rows.shape[0], step):
            rows = block.embedded_rows[start:start + step]
            vectors = torch.tensor(block.embeddings[start:start + step], dtype=torch.float32)
            scores = (vectors @ targets).numpy()
            users = block.user_ids[rows]
            own_owner, own = _expand_ranges(np.searchsorted(authors_sorted, users, side="left"),
                                            np.searchsorted(authors_sorted, users, side="right"))
            scores[own_owner, by_author[own]] = -np.inf
            r, c, v, k = top_k_per_row(scores, config.twhin_top_k)
            parts.append((rows[r], indexes.twhin_cols[c], v.astype(np.float64), k))
    if not parts:
        nothing = np.zeros(0, dtype=np.int64)
        return Retrieved("twhin", nothing, nothing, np.zeros(0), nothing.astype(np.int32))
    rows, cols, values, ranks = (np.concatenate(p) for p in zip(*parts))
    return Retrieved("twhin", rows, cols, values, ranks)


SOURCE_FUNCTIONS = {
    "in_network": in_network_candidates,
    "uteg": uteg_candidates,
    "simclusters": simclusters_candidates,
    "twhin": twhin_candidates,
    "frs": frs_candidates,
    "popular": popular_candidates,
}


def retrieve_block(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> list[Retrieved]:
    """Every source of `config.sources` for a block of users."""
    return [SOURCE_FUNCTIONS[name](block, indexes, config) for name in SOURCES if name in config.sources]


# --- merge, filters, selection -----------------------------------------------------------------

def _pairs_in(rows: np.ndarray, ids: np.ndarray, member_rows: np.ndarray, member_ids: np.ndarray) -> np.ndarray:
    """Whether each (rows[i], ids[i]) is among the (member_rows, member_ids) pairs."""
    result = np.zeros(rows.shape[0], dtype=bool)
    if member_rows.shape[0] == 0 or rows.shape[0] == 0:
        return result
    # Pairs as int64 keys: row x (distinct member ids) + the id's position among them.
    universe = np.unique(member_ids)
    position, known = _lookup(universe, ids)
    members = np.unique(member_rows * universe.shape[0] + np.searchsorted(universe, member_ids))
    _, result[known] = _lookup(members, rows[known] * universe.shape[0] + position)
    return result


def _nullable(values: np.ndarray, valid: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A primitive Arrow array from numpy values (of the type's width) and a validity mask."""
    values = np.ascontiguousarray(values)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(arrow_type, values.shape[0], [pa.py_buffer(bitmap), pa.py_buffer(values)],
                                 null_count=int(values.shape[0] - np.count_nonzero(valid)))


def _list_array(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32), type=pa.int32()), values)


def _union_proofs(
    groups: int, group: np.ndarray, priority: np.ndarray, ids: np.ndarray, *, max_proofs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, its proof ids in priority order, each once (at its first occurrence), at most
    max_proofs: (offsets, ids), and how many distinct ids each group had."""
    order = np.lexsort((priority, ids, group))
    group, priority, ids = group[order], priority[order], ids[order]
    first = np.r_[True, (group[1:] != group[:-1]) | (ids[1:] != ids[:-1])] if group.shape[0] else np.zeros(0, bool)
    group, priority, ids = group[first], priority[first], ids[first]
    order = np.lexsort((priority, group))
    group, ids = group[order], ids[order]
    shown = _ranks_within(group) <= max_proofs
    offsets = np.r_[0, np.cumsum(np.bincount(group[shown], minlength=groups))].astype(np.int64)
    return offsets, ids[shown], np.bincount(group, minlength=groups)


def merge_block(
    block: RequestBlock, retrieved: list[Retrieved], tweets: TweetTable, config: CandidatesConfig = DEFAULTS
) -> pa.RecordBatch:
    """One row per (user, tweet) of the block with every source that retrieved it, tagged with the
    first filter it fails (`filtered_by`) or ranked (`pool_rank`, interleaving order: min over its
    sources of rank / cap, ties by tweet id) up to `max_candidates_per_user`; rows of
    `_TAGGED_SCHEMA`, by user then tweet."""
    n = len(tweets)
    parts = [r for r in retrieved if len(r)]
    rows = np.concatenate([r.user_rows for r in parts]) if parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([r.cols for r in parts]) if parts else np.zeros(0, dtype=np.int64)
    order = np.argsort(rows * n + cols, kind="stable")
    first = _run_starts((rows * n + cols)[order])
    sizes = np.diff(np.r_[first, order.shape[0]])
    groups = first.shape[0]
    group_of = np.empty(order.shape[0], dtype=np.int64)
    group_of[order] = np.repeat(np.arange(groups), sizes)
    g_rows, g_cols = rows[order][first], cols[order][first]

    present = np.zeros((groups, len(SOURCES)), dtype=bool)
    score = np.zeros((groups, len(SOURCES)))
    rank = np.zeros((groups, len(SOURCES)), dtype=np.int32)
    cluster = np.full(groups, -1, dtype=np.int64)
    frs_count = np.zeros(groups, dtype=np.int64)
    proof_group, proof_priority, proof_id = [], [], []
    offset = 0
    for r in parts:
        g = group_of[offset:offset + len(r)]
        s = SOURCES.index(r.source)
        present[g, s], score[g, s], rank[g, s] = True, r.scores, r.ranks
        if r.clusters is not None:
            cluster[g] = r.clusters
        if r.proof_ids is not None:
            owner, positions = _expand_ranges(r.proof_offsets[:-1], r.proof_offsets[1:])
            proof_group.append(g[owner])
            # uteg's proofs first, then frs's, each in its own order.
            proof_priority.append(s * (1 << 40) + positions - r.proof_offsets[owner])
            proof_id.append(r.proof_ids[positions])
            if r.source == "frs":
                frs_count[g] = r.proof_counts
        offset += len(r)

    proof_offsets, proof_ids, proof_total = _union_proofs(
        groups, *(np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in (proof_group, proof_priority, proof_id)),
        max_proofs=config.max_proofs,
    )

    # Filters, then the interleaved total cap.
    user_ids = block.user_ids[g_rows]
    author_ids = tweets.author_ids[g_cols]
    reason = np.zeros(groups, dtype=np.int64)  # index into (None,) + REMOVAL_REASONS
    hidden = _pairs_in(g_rows, author_ids, block.hidden.rows, block.hidden.values)
    seen_cols, seen_found = tweets.columns_of(block.seen.values)
    seen = _pairs_in(g_rows, g_cols, block.seen.rows[seen_found], seen_cols) if config.exclude_seen \
        else np.zeros(groups, dtype=bool)
    for code, failed in enumerate((user_ids == author_ids, hidden, seen), start=1):
        reason[(reason == 0) & failed] = code
    caps = np.array([config.source_caps()[s] for s in SOURCES], dtype=np.float64)
    interleave = np.where(present, rank / caps, np.inf).min(axis=1)
    kept = np.flatnonzero(reason == 0)
    tweet_ids = tweets.tweet_ids[g_cols]
    # Groups are in (user, tweet) order and lexsort is stable: equal keys stay in tweet id order.
    kept = kept[np.lexsort((interleave[kept], g_rows[kept]))]
    pool_rank = np.zeros(groups, dtype=np.int32)
    pool_rank[kept] = _ranks_within(g_rows[kept])
    reason[pool_rank > config.max_candidates_per_user] = len(REMOVAL_REASONS)
    kept_rows = reason == 0

    # Rows come out in (user, tweet) order, removed ones included.
    score, rank = score.T.copy(), rank.T.copy()  # one row per source
    alphabetical = [SOURCES.index(s) for s in sorted(SOURCES)]
    _, named = np.nonzero(present[:, alphabetical])
    columns = {
        "user_id": pa.array(user_ids, type=pa.int64()),
        "tweet_id": pa.array(tweet_ids, type=pa.int64()),
        "author_id": pa.array(author_ids, type=pa.int64()),
        "pool_rank": _nullable(pool_rank, kept_rows, pa.int32()),
        "sources": _list_array(np.r_[0, np.cumsum(present.sum(axis=1))],
                               pc.take(pa.array(sorted(SOURCES), type=pa.string()), pa.array(named))),
        "is_in_network": pa.array(_pairs_in(g_rows, author_ids, block.followed.rows, block.followed.values),
                                  type=pa.bool_()),
        **{f"{s}_score": _nullable(score[i], present[:, i], pa.float64()) for i, s in enumerate(SOURCES)},
        **{f"{s}_rank": _nullable(rank[i], present[:, i], pa.int32()) for i, s in enumerate(SOURCES)},
        "simclusters_cluster_id": _nullable(cluster.astype(np.int32), present[:, SOURCES.index("simclusters")],
                                            pa.int32()),
        "social_proof_user_ids": _list_array(proof_offsets, pa.array(proof_ids, type=pa.int64())),
        "social_proof_count": pa.array(np.maximum(proof_total, frs_count), type=pa.int32()),
        "created_us": pa.array(tweets.created_us[g_cols], type=pa.int64()),
        "filtered_by": pc.take(pa.array((None,) + REMOVAL_REASONS, type=pa.string()),
                               _nullable(reason, ~kept_rows, pa.int64())),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in _TAGGED_SCHEMA.fields], names=_TAGGED_SCHEMA.fieldNames())


def retrieved_batches(block: RequestBlock, retrieved: list[Retrieved], tweets: TweetTable) -> Iterator[pa.RecordBatch]:
    """The sources' rows before the merge (`_RETRIEVED_SCHEMA`), one batch per source."""
    for r in retrieved:
        proofs = (
            _list_array(r.proof_offsets, pa.array(r.proof_ids, type=pa.int64())) if r.proof_ids is not None
            else pa.nulls(len(r), pa.list_(pa.int64()))
        )
        yield pa.RecordBatch.from_arrays([
            pa.array(np.full(len(r), r.source), type=pa.string()),
            pa.array(block.user_ids[r.user_rows], type=pa.int64()),
            pa.array(tweets.tweet_ids[r.cols], type=pa.int64()),
            pa.array(tweets.author_ids[r.cols], type=pa.int64()),
            pa.array(tweets.created_us[r.cols], type=pa.int64()),
            pa.array(r.scores, type=pa.float64()),
            pa.array(r.ranks, type=pa.int32()),
            pa.array(r.clusters, type=pa.int32()) if r.clusters is not None else pa.nulls(len(r), pa.int32()),
            proofs,
            pa.array(r.proof_counts, type=pa.int32()) if r.proof_counts is not None else pa.nulls(len(r), pa.int32()),
        ], names=_RETRIEVED_SCHEMA.fieldNames())


def _pipeline(indexes: CandidateIndexes, config: CandidatesConfig, *, merged: bool):
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one Spark task per core
        # Arrays unpickled from the task can be read-only; torch wants the matrix writable.
        local = replace(indexes, twhin_matrix=np.array(indexes.twhin_matrix)) \
            if not indexes.twhin_matrix.flags.writeable else indexes
        try:
            for batch in batches:
                for block in _request_blocks(batch, config.block_users):
                    retrieved = retrieve_block(block, local, config)
                    if merged:
                        yield merge_block(block, retrieved, local.tweets, config)
                    else:
                        yield from retrieved_batches(block, retrieved, local.tweets)
        finally:
            torch.set_num_threads(threads)

    return run


def retrieved_candidates(
    requests: DataFrame, indexes: CandidateIndexes, *, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """Every source's rows before the merge: (source, user_id, tweet_id, author_id,
    tweet_created_at, score, rank, cluster_id, proof_user_ids, proof_count)."""
    rows = requests.mapInArrow(_pipeline(indexes, config, merged=False), _RETRIEVED_SCHEMA)
    return rows.withColumn("tweet_created_at", F.timestamp_micros("created_us")).drop("created_us")


def tagged_candidates(requests: DataFrame, indexes: CandidateIndexes, *, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """Every merged (user, tweet) row with `filtered_by` (null = kept) and `pool_rank` (kept rows)."""
    return requests.mapInArrow(_pipeline(indexes, config, merged=True), _TAGGED_SCHEMA)


def select_candidates(tagged: DataFrame, *, as_of: datetime) -> DataFrame:
    """The kept rows of `tagged_candidates(...)` as the table: the `CANDIDATES_SCHEMA` columns."""
    kept = tagged.where(F.col("filtered_by").isNull()).withColumns({
        "tweet_created_at": F.timestamp_micros("created_us"),
        "built_at": F.lit(as_of),
    })
    return kept.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in CANDIDATES_SCHEMA.fields])


def build_candidates(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """The `candidates` table (collects the indexes to the driver first)."""
    indexes = collect_indexes(inputs, as_of=as_of, config=config)
    requests = candidate_requests(inputs, as_of=as_of, config=config)
    return select_candidates(tagged_candidates(requests, indexes, config=config), as_of=as_of)


# ---------------------------------------------------------------------------------------------
# Counts for the asset's metadata (aggregate expressions for `DataFrame.observe`)
# ---------------------------------------------------------------------------------------------

def _count(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


def retrieval_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over `tagged_candidates(...)` rows: `retrieved_<source>` (rows each source produced),
    `removed_<reason>` (rows removed by each filter, and by the total cap)."""
    return (
        [_count(F.col(f"{s}_rank").isNotNull()).alias(f"retrieved_{s}") for s in SOURCES if s in config.sources]
        + [_count(F.col("filtered_by") == F.lit(r)).alias(f"removed_{r}") for r in REMOVAL_REASONS]
    )


def kept_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over the `candidates` rows: `kept_<source>`, `rows`, `users`."""
    return (
        [_count(F.col(f"{s}_rank").isNotNull()).alias(f"kept_{s}") for s in SOURCES if s in config.sources]
        + [F.count(F.lit(1)).alias("rows"), _count(F.col("pool_rank") == 1).alias("users")]
    )
