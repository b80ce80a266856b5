"""The candidate stores: the pool's tweets and every source's index, collected to the driver and
shipped with the per-user tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.candidates.columns import age_hours, between, micros
from jobs.candidates.config import DEFAULTS, CandidateInputs, CandidatesConfig
from jobs.candidates.kernels import lookup, ranks_within
from jobs.candidates.requests import tweet_pool
from jobs.candidates.sparse import SparseIndex

# The popular index's key for the global list (community keys are cluster ids, >= 0).
GLOBAL_COMMUNITY = -1


@dataclass(frozen=True)
class TweetTable:
    """The pool's tweets, sorted by tweet id; a candidate is a column (position) in it, so column
    order is tweet id order (the tie order everywhere)."""

    tweet_ids: np.ndarray
    author_ids: np.ndarray
    created_us: np.ndarray

    @classmethod
    def from_arrow(cls, table: pa.Table) -> TweetTable:
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
        return lookup(self.tweet_ids, np.asarray(tweet_ids, dtype=np.int64))


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


def collect_indexes(
    inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> CandidateIndexes:
    """The candidate stores, collected to the driver (Spark jobs run here); a source that is not in
    `config.sources` gets an empty index."""
    pool = tweet_pool(inputs.tweets, as_of=as_of, freshness_hours=config.freshness_hours)
    tweets = TweetTable.from_arrow(
        pool.select("tweet_id", "author_id", F.unix_micros("created_at").alias("created_us")).toArrow()
    )
    wanted = set(config.sources)
    empty = SparseIndex.empty()
    half_life = config.recency_half_life_hours
    sparse = dict(
        in_network=recent_by_author(
            tweets, as_of=as_of, window_hours=config.in_network_window_hours, half_life_hours=half_life
        )
        if "in_network" in wanted
        else empty,
        frs=recent_by_author(tweets, as_of=as_of, window_hours=config.frs_window_hours, half_life_hours=half_life)
        if "frs" in wanted
        else empty,
        uteg=uteg_index(inputs.engagements, tweets, as_of=as_of, config=config) if "uteg" in wanted else empty,
        simclusters=simclusters_index(inputs.simclusters_top_tweets_per_cluster, tweets, config=config)
        if "simclusters" in wanted
        else empty,
        popular=popular_source_index(inputs, pool, tweets, as_of=as_of, config=config)
        if "popular" in wanted
        else empty,
    )
    twhin_cols, twhin_matrix = (
        twhin_tweet_matrix(inputs.twhin_tweet_embeddings, pool, tweets)
        if "twhin" in wanted
        else (np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    )
    return CandidateIndexes(
        as_of_us=micros(as_of),
        tweets=tweets,
        twhin_cols=twhin_cols,
        twhin_matrix=twhin_matrix,
        twhin_by_author=np.argsort(tweets.author_ids[twhin_cols], kind="stable"),
        **sparse,
    )


def recent_by_author(
    tweets: TweetTable, *, as_of: datetime, window_hours: float, half_life_hours: float
) -> SparseIndex:
    """author -> pool tweets created at most `window_hours` before as_of, score = recency decay
    0.5 ** (age hours / half-life) (in_network, frs)."""
    hours = (micros(as_of) - tweets.created_us) / 3.6e9
    recent = hours <= window_hours
    columns = np.arange(len(tweets), dtype=np.int64)
    return SparseIndex.build(tweets.author_ids[recent], columns[recent], 0.5 ** (hours[recent] / half_life_hours))


def uteg_index(
    engagements: DataFrame, tweets: TweetTable, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> SparseIndex:
    """engager -> pool tweets they engaged with (`uteg_actions`) in the uteg window, score 1."""
    engaged = (
        engagements.where(
            F.col("action").isin(*config.uteg_actions)
            & between("created_at", as_of - timedelta(hours=config.uteg_window_hours), as_of)
        )
        .select(F.col("user_id").alias("engager_id"), "tweet_id")
        .distinct()
        .toArrow()
    )
    cols, found = tweets.columns_of(np.asarray(engaged["tweet_id"].to_numpy(), dtype=np.int64))
    engagers = np.asarray(engaged["engager_id"].to_numpy(), dtype=np.int64)[found]
    return SparseIndex.build(engagers, cols, np.ones(cols.shape[0]))


def simclusters_index(
    top_tweets_per_cluster: DataFrame, tweets: TweetTable, *, config: CandidatesConfig = DEFAULTS
) -> SparseIndex:
    """cluster -> its indexed pool tweets down to rank `simclusters_tweets_per_cluster`, score = the
    index score."""
    index = (
        top_tweets_per_cluster.where(F.col("rank") <= config.simclusters_tweets_per_cluster)
        .select(F.col("cluster_id").cast("long"), "tweet_id", F.col("score").cast("double"))
        .toArrow()
    )
    cols, found = tweets.columns_of(np.asarray(index["tweet_id"].to_numpy(), dtype=np.int64))
    return SparseIndex.build(
        np.asarray(index["cluster_id"].to_numpy(), dtype=np.int64)[found],
        cols,
        np.asarray(index["score"].to_numpy(), dtype=np.float64)[found],
    )


def popular_tweet_scores(
    engagements: DataFrame, pool: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """(tweet_id, author_id, score): pool tweets from the last `popular_window_hours`, score = sum
    over their `popular_actions` engagements at or before as_of of
    0.5 ** (engagement age / popular_half_life_hours)."""
    start = as_of - timedelta(hours=config.popular_window_hours)
    recent = pool.where(F.col("created_at") >= F.lit(start)).select("tweet_id", "author_id")
    weighted = engagements.where(
        F.col("action").isin(*config.popular_actions) & between("created_at", start, as_of)
    ).select(
        "tweet_id", F.pow(F.lit(0.5), age_hours("created_at", as_of) / F.lit(config.popular_half_life_hours)).alias("w")
    )
    return (
        weighted.join(recent, on="tweet_id", how="inner")
        .groupBy("tweet_id", "author_id")
        .agg(F.sum("w").alias("score"))
    )


def popular_source_index(
    inputs: CandidateInputs,
    pool: DataFrame,
    tweets: TweetTable,
    *,
    as_of: datetime,
    config: CandidatesConfig = DEFAULTS,
) -> SparseIndex:
    """`popular_index` of the pool's `popular_tweet_scores`, communities from `simclusters_known_for`."""
    scores = popular_tweet_scores(inputs.engagements, pool, as_of=as_of, config=config).toArrow()
    known_for = inputs.simclusters_known_for.select(
        F.col("producer_id").cast("long"), F.col("cluster_id").cast("long")
    ).toArrow()
    return popular_index(
        np.asarray(scores["tweet_id"].to_numpy(), dtype=np.int64),
        np.asarray(scores["author_id"].to_numpy(), dtype=np.int64),
        np.asarray(scores["score"].to_numpy(), dtype=np.float64),
        known_for,
        tweets,
        config=config,
    )


def popular_index(
    tweet_ids: np.ndarray,
    author_ids: np.ndarray,
    scores: np.ndarray,
    known_for: pa.Table,
    tweets: TweetTable,
    *,
    config: CandidatesConfig = DEFAULTS,
) -> SparseIndex:
    """GLOBAL_COMMUNITY -> the `popular_global_k` best tweets; each community (the author's KnownFor
    cluster) -> its `popular_per_community_k` best, less the global ones (a tweet has one community,
    so a user's lists then never repeat a tweet). Best = score, ties by tweet id."""
    global_pick = np.lexsort((tweet_ids, -scores))[: config.popular_global_k]
    producers = np.asarray(known_for["producer_id"].to_numpy(), dtype=np.int64)
    by_producer = np.argsort(producers, kind="stable")
    position, has_community = lookup(producers[by_producer], author_ids)
    community = np.full(author_ids.shape[0], -1, dtype=np.int64)
    community[has_community] = np.asarray(known_for["cluster_id"].to_numpy(), dtype=np.int64)[by_producer][position]
    candidates = np.flatnonzero(has_community)
    candidates = candidates[np.lexsort((tweet_ids[candidates], -scores[candidates], community[candidates]))]
    ranks = ranks_within(community[candidates])
    community_pick = candidates[ranks <= config.popular_per_community_k]
    community_pick = community_pick[~np.isin(community_pick, global_pick)]
    picked = np.r_[global_pick, community_pick]
    keys = np.r_[np.full(global_pick.shape[0], GLOBAL_COMMUNITY), community[community_pick]]
    cols, found = tweets.columns_of(tweet_ids[picked])
    return SparseIndex.build(keys[found], cols, scores[picked][found])


def twhin_tweet_matrix(
    tweet_embeddings: DataFrame, pool: DataFrame, tweets: TweetTable
) -> tuple[np.ndarray, np.ndarray]:
    """(pool columns with a TwHIN embedding, ascending; their vectors as a float32 matrix, one row each)."""
    embedded = tweet_embeddings.join(pool.select("tweet_id"), on="tweet_id", how="left_semi").toArrow()
    if not embedded.num_rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    cols, found = tweets.columns_of(np.asarray(embedded["tweet_id"].to_numpy(), dtype=np.int64))
    flat = pc.list_flatten(embedded["embedding"].combine_chunks())
    matrix = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(embedded.num_rows, -1)
    order = np.argsort(cols)
    return cols[order], np.ascontiguousarray(matrix[found][order])
