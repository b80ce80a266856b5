"""The per-user pass on Spark: one `mapInArrow` over the users' request rows, each carrying what
its feed needs (the candidate requests, the user's features, its (user, author) rows, its fatigue
and its side of the pair kernel), partitioned by user, so it scales out on a cluster unchanged.
The candidate indexes, the author and tweet features and the tweets' side of the pair kernel are
collected once and shipped with the tasks (`jobs.feed_pass.block.PassTables`).

It replaces candidates -> user_tweet_features -> ranked_feeds, which wrote the user x candidate
product twice (91M rows each at 100K users), read it back and shuffled it about six times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.registry import keys_of_asset
from features.tables import DEFAULT_CONFIG, FeatureConfig
from features.user_tweet import entity_sides
from features.vectors import qualified
from jobs.candidates.config import CandidateInputs, CandidatesConfig
from jobs.candidates.indexes import CandidateIndexes, collect_indexes
from jobs.candidates.requests import candidate_requests
from jobs.feed_pass.block import FATIGUE_ROWS, IS_REPLY, PAIR_FEATURE_NAMES, PassModels, PassTables, feeds_of_block
from jobs.feed_pass.hydration import USER_AUTHOR_ROWS, KeyedTable, features_named
from jobs.feed_pass.sample import SAMPLE_SCHEMA, sample_of_block
from jobs.ranking import RANKED_FEEDS_SCHEMA, RankingConfig


@dataclass(frozen=True)
class PassInputs:
    """The tables the pass reads: the candidates job's, the per-entity feature tables and the
    SimClusters tweet embeddings (the tweets' side of the pair kernel)."""

    candidates: CandidateInputs
    user_features: DataFrame
    author_features: DataFrame
    tweet_features: DataFrame
    user_author_features: DataFrame
    simclusters_tweet_embeddings: DataFrame
    fatigue: DataFrame  # jobs.ranking.fatigue_days


def _check_computable(names: Sequence[str]) -> None:
    """Every (user, tweet) feature a model reads must be one the pair kernel computes."""
    pair = {f.qualified_name for f in features_named(names, "user_tweet")}
    missing = sorted(pair - PAIR_FEATURE_NAMES)
    if missing:
        raise ValueError(
            f"the per-user pass computes the pair features {sorted(PAIR_FEATURE_NAMES)}; a ranker reads {missing}, "
            "which only the candidates table knows (models.ranker_features.CANDIDATE_POOL_FEATURES)"
        )


def _qualified_columns(table: DataFrame, asset: str, entity: str, names: Sequence[str]) -> DataFrame:
    """The table's keys and the features among `names` it holds, under their qualified names."""
    wanted = [f.qualified_name for f in features_named(names, entity)]
    return qualified(table, asset, entity).select(*keys_of_asset(asset), *wanted)


def request_rows(
    inputs: PassInputs, user_side: DataFrame, names: Sequence[str], *, as_of: datetime, config: CandidatesConfig
) -> DataFrame:
    """One row per user: the candidate requests, the user's features, its USER_AUTHOR_ROWS and
    FATIGUE_ROWS lists and its side of the pair kernel, partitioned by user."""
    users = _qualified_columns(inputs.user_features, "user_features", "user", names)
    wanted = [f.qualified_name for f in features_named(names, "user_author")]
    user_author = (
        qualified(inputs.user_author_features, "user_author_features", "user_author")
        .groupBy("user_id")
        .agg(
            F.collect_list(F.struct(F.col("author_id").cast("long").alias("author_id"), *wanted)).alias(
                USER_AUTHOR_ROWS
            )
        )
    )
    fatigue = inputs.fatigue.groupBy("user_id").agg(
        F.collect_list(F.struct(F.col("author_id").cast("long").alias("author_id"), "fatigue_days_since")).alias(
            FATIGUE_ROWS
        )
    )
    rows = candidate_requests(inputs.candidates, as_of=as_of, config=config)
    for part in (users, user_author, fatigue, user_side):
        rows = rows.join(part, on="user_id", how="left")
    return rows.repartition("user_id")


def pass_tables(
    inputs: PassInputs, tweet_side: DataFrame, names: Sequence[str], indexes: CandidateIndexes, overall_rate
) -> PassTables:
    """The tables every task reads, collected to the driver: the pool's tweets only."""
    spark = inputs.tweet_features.sparkSession
    pool = spark.createDataFrame(pa.table({"tweet_id": indexes.tweets.tweet_ids}).to_pandas())
    authors = _qualified_columns(inputs.author_features, "author_features", "author", names)
    tweets = _qualified_columns(inputs.tweet_features, "tweet_features", "tweet", names)
    return PassTables(
        indexes=indexes,
        authors=KeyedTable.of(authors.toArrow(), "author_id"),
        tweets=KeyedTable.of(tweets.join(pool, on="tweet_id", how="left_semi").toArrow(), "tweet_id"),
        tweet_sides=KeyedTable.of(tweet_side.join(pool, on="tweet_id", how="left_semi").toArrow(), "tweet_id"),
        overall_rate=overall_rate,
    )


@dataclass(frozen=True)
class PreparedPass:
    """The pass, ready to run: the request rows (one per user, partitioned by user), what every
    task reads, the models and the candidate sources' settings."""

    rows: DataFrame
    tables: PassTables
    models: PassModels
    candidates_config: CandidatesConfig

    def feeds(self) -> DataFrame:
        """The `ranked_feeds` table (RANKED_FEEDS_SCHEMA)."""
        return self.rows.mapInArrow(self._per_block(feeds_of_block), RANKED_FEEDS_SCHEMA)

    def sample(self, *, share: float = 0.01, min_users: int = 200) -> DataFrame:
        """`ranked_feeds_sample` (SAMPLE_SCHEMA) of the first max(`min_users`, `share` of the users)
        in xxhash64 order: the same users every run."""
        users = self.rows.select("user_id")
        count = max(min_users, math.ceil(share * users.count()))
        sampled = users.orderBy(F.xxhash64("user_id"), "user_id").limit(count)
        rows = self.rows.join(sampled, on="user_id", how="left_semi")
        return rows.mapInArrow(self._per_block(sample_of_block), SAMPLE_SCHEMA)

    def _per_block(self, per_block: Callable):
        """The function `mapInArrow` runs on a partition's request rows: `per_block` per block."""
        tables, models, config = self.tables, self.models, self.candidates_config

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one Spark task per core
            local = writable(tables)
            try:
                for batch in batches:
                    for start in range(0, batch.num_rows, config.block_users):
                        yield from per_block(batch.slice(start, config.block_users), local, models, config).to_batches()
            finally:
                torch.set_num_threads(threads)

        return run


def prepare_pass(
    inputs: PassInputs,
    *,
    as_of: datetime,
    light_model_dir: Path,
    light_features: Sequence[str],
    heavy_model_dir: Path,
    heavy_features: Sequence[str],
    config: RankingConfig = RankingConfig(),
    candidates_config: CandidatesConfig | None = None,
    feature_config: FeatureConfig = DEFAULT_CONFIG,
) -> PreparedPass:
    """The pass over `inputs` as of `as_of` with the given rankers: Spark jobs run here to collect
    the candidate indexes and the tables every task reads."""
    from jobs.candidates.config import DEFAULTS

    candidates_config = candidates_config or DEFAULTS
    names = [*light_features, *heavy_features, IS_REPLY]
    _check_computable(names)
    c = inputs.candidates
    user_side, tweet_side, sides = entity_sides(
        c.simclusters_interested_in,
        inputs.simclusters_tweet_embeddings,
        c.twhin_user_embeddings,
        c.twhin_tweet_embeddings,
        tweets=c.tweets,
        engagements=c.engagements,
        follows=c.follows,
        as_of=as_of,
        config=feature_config,
    )
    indexes = collect_indexes(c, as_of=as_of, config=candidates_config)
    models = PassModels(
        light_dir=str(light_model_dir),
        light_features=tuple(light_features),
        heavy_dir=str(heavy_model_dir),
        heavy_features=tuple(heavy_features),
        weights=dict(config.weights()),
        light_keep=config.light_keep,
        heuristics=config.heuristics,
    )
    return PreparedPass(
        rows=request_rows(inputs, user_side, names, as_of=as_of, config=candidates_config),
        tables=pass_tables(inputs, tweet_side, names, indexes, sides.overall_rate),
        models=models,
        candidates_config=candidates_config,
    )


def ranked_feeds_in_one_pass(inputs: PassInputs, **settings) -> DataFrame:
    """The `ranked_feeds` table in one pass per block of users (`prepare_pass`' arguments): the same
    feeds as `jobs.ranking.ranked_feeds` over the `candidates` and `user_tweet_features` tables."""
    return prepare_pass(inputs, **settings).feeds()


def writable(tables: PassTables) -> PassTables:
    """`tables` with a writable TwHIN matrix: arrays unpickled in a task can be read-only, and torch
    wants the matrix writable."""
    matrix = tables.indexes.twhin_matrix
    if matrix.flags.writeable:
        return tables
    return replace(tables, indexes=replace(tables.indexes, twhin_matrix=np.array(matrix)))
