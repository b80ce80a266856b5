"""Batch ranking's parts: feature vectors, the light and heavy rankers on Spark rows, the fatigue,
the feed heuristics on whole users' rows (`feeds_of_whole_users`, which the per-user pass of
`jobs.feed_pass` calls per block), the `ranked_feeds` schema, and the three-step reference over the
full tables (`ranked_feeds`).

Everything a model runs on moves through Arrow batches (`mapInArrow`, `applyInPandas`), never a
row-wise Python UDF. A model is loaded once per Python worker process (`loaded_model`, keyed by its
directory and manifest hash): Spark reuses its Python workers across tasks, so an executor reads
the weights once, not once per partition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from core.feed_heuristics import FEED_COLUMNS, INPUT_COLUMNS, RESCORE_COLUMNS, FeedHeuristics, rank_user_feed
from core.heads import HEAD_COLUMNS, HEADS
from features.registry import ASSETS, ENTITY_OF_ASSET, FEATURES, features_for, keys_of_asset
from features.vectors import qualified, with_default

FEATURE_TABLES = {asset: (ENTITY_OF_ASSET[asset], keys_of_asset(asset)) for asset in ASSETS}  # asset -> (entity, keys)
# Candidate columns carried from the pool to the feed.
CARRIED = (
    "user_id",
    "tweet_id",
    "author_id",
    "tweet_created_at",
    "is_in_network",
    "sources",
    "social_proof_user_ids",
    "social_proof_count",
)

# The tweet feature the heuristics read as `is_reply` (ranked_feeds' column).
IS_REPLY = "tweet__is_reply"

RANKED_FEEDS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.LongType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("tweet_id", T.LongType(), False),
        T.StructField("author_id", T.LongType(), False),
        T.StructField("tweet_created_at", T.TimestampType(), False),
        T.StructField("final_score", T.DoubleType(), False),
        T.StructField("heavy_score", T.DoubleType(), False),
        T.StructField("light_score", T.DoubleType(), False),
    ]
    + [T.StructField(column, T.DoubleType(), False) for column in HEAD_COLUMNS]
    + [
        T.StructField("is_in_network", T.BooleanType(), False),
        T.StructField("is_reply", T.BooleanType(), False),
        T.StructField("sources", T.ArrayType(T.StringType()), False),
        T.StructField("social_proof_user_ids", T.ArrayType(T.LongType()), False),
        T.StructField("social_proof_count", T.IntegerType(), False),
        T.StructField("diversity_multiplier", T.DoubleType(), False),
        T.StructField("fatigue_multiplier", T.DoubleType(), False),
        T.StructField("page", T.IntegerType(), False),
    ]
)
RANKED_FEEDS_ARROW = to_arrow_schema(RANKED_FEEDS_SCHEMA, timezone="UTC")  # the sessions' time zone


@dataclass(frozen=True)
class RankingConfig:
    light_keep: int = 500  # candidates per user the heavy ranker scores
    head_weights: Mapping[str, float] = field(default_factory=dict)  # {} = DEFAULT_HEAD_WEIGHTS
    heuristics: FeedHeuristics = FeedHeuristics()

    def __post_init__(self) -> None:
        if self.light_keep < 1:
            raise ValueError(f"light_keep must be at least 1, got {self.light_keep}")
        unknown = set(self.head_weights) - set(HEADS)
        if unknown:
            raise ValueError(f"head_weights names unknown heads {sorted(unknown)} (heads: {HEADS})")

    def weights(self) -> dict[str, float]:
        from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS

        return {**DEFAULT_HEAD_WEIGHTS, **self.head_weights}


def feature_tables(tables: Mapping[str, DataFrame], feature_names: Sequence[str]) -> dict[str, DataFrame]:
    """Each feature table that holds one of `feature_names`: its keys and those features (qualified
    names), as `join_features` reads them."""
    wanted = set(feature_names)
    prepared = {}
    for asset, (entity, keys) in FEATURE_TABLES.items():
        columns = [f.qualified_name for f in features_for(entity) if f.qualified_name in wanted]
        if columns:
            prepared[asset] = qualified(tables[asset], asset, entity).select(*keys, *columns)
    return prepared


def join_features(rows: DataFrame, prepared: Mapping[str, DataFrame], feature_names: Sequence[str]) -> DataFrame:
    """`rows` plus the named features from the `feature_tables` (`prepared`), missing rows at the
    declared defaults; a feature `rows` already carries is kept as it is."""
    wanted = [name for name in dict.fromkeys(feature_names) if name not in rows.columns]
    out = rows
    for asset, table in prepared.items():
        columns = [c for c in table.columns if c in wanted]
        if columns:
            keys = list(FEATURE_TABLES[asset][1])
            out = out.join(table.select(*keys, *columns), on=keys, how="left")
    by_name = {f.qualified_name: f for f in FEATURES}
    return out.select(*rows.columns, *[with_default(by_name[name]) for name in wanted])


def feature_vectors(pairs: DataFrame, tables: Mapping[str, DataFrame], feature_names: Sequence[str]) -> DataFrame:
    """`pairs` (user_id, tweet_id, author_id, ...) with the named features (qualified names) joined from
    the feature tables, missing rows at the declared defaults."""
    return join_features(pairs, feature_tables(tables, feature_names), feature_names)


_MODELS: dict[tuple[str, str], object] = {}


def loaded_model(kind: str, directory: str):
    """The model in `directory`, loaded at most once per process (and torch limited to one thread:
    Spark already runs one task per core)."""
    manifest = Path(directory) / "manifest.json"
    key = (directory, manifest.read_text() if manifest.exists() else "")
    if key not in _MODELS:
        if kind == "light":
            from models.light_ranker import LightRanker

            _MODELS[key] = LightRanker.load(Path(directory))
        else:
            import torch

            from models.heavy_ranker import HeavyRanker

            torch.set_num_threads(1)
            _MODELS[key] = HeavyRanker.load(Path(directory))
    return _MODELS[key]


def _matrix(batch: pa.RecordBatch, names: Sequence[str]) -> np.ndarray:
    from models.ranker_features import feature_matrix

    return feature_matrix(pa.Table.from_batches([batch]), names)


def light_scores(vectors: DataFrame, *, model_dir: Path, feature_names: Sequence[str]) -> DataFrame:
    """`vectors` plus `light_score` (the light ranker's probability of any positive engagement)."""
    directory, names = str(model_dir), list(feature_names)
    schema = T.StructType(vectors.schema.fields + [T.StructField("light_score", T.DoubleType(), False)])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = loaded_model("light", directory)
        for batch in batches:
            scores = model.predict(_matrix(batch, names)).astype(np.float64)
            yield batch.append_column("light_score", pa.array(scores))

    return vectors.mapInArrow(score, schema)


def keep_best(scored: DataFrame, *, column: str, keep: int) -> DataFrame:
    """Each user's `keep` rows with the highest `column` (ties: tweet_id)."""
    order = Window.partitionBy("user_id").orderBy(F.col(column).desc(), F.col("tweet_id"))
    return scored.withColumn("_n", F.row_number().over(order)).where(F.col("_n") <= keep).drop("_n")


def heavy_scores(
    vectors: DataFrame, *, model_dir: Path, feature_names: Sequence[str], weights: Mapping[str, float]
) -> DataFrame:
    """`vectors` plus the calibrated probability of every head (`p_<head>`) and `heavy_score` =
    Σ weight × probability."""
    directory, names, weights = str(model_dir), list(feature_names), dict(weights)
    schema = T.StructType(
        vectors.schema.fields + [T.StructField(c, T.DoubleType(), False) for c in (*HEAD_COLUMNS, "heavy_score")]
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from models.heavy_ranker import RankerInputs, final_scores

        model = loaded_model("heavy", directory)
        for batch in batches:
            inputs = RankerInputs(
                dense=_matrix(batch, names),
                user_ids=batch.column("user_id").to_numpy(zero_copy_only=False),
                author_ids=batch.column("author_id").to_numpy(zero_copy_only=False),
            )
            probabilities = model.probabilities(inputs)
            by_head = dict(zip(model.heads, probabilities.T))
            for head in HEADS:
                batch = batch.append_column(f"p_{head}", pa.array(by_head[head].astype(np.float64)))
            batch = batch.append_column("heavy_score", pa.array(final_scores(probabilities, model.heads, weights)))
            yield batch

    return vectors.mapInArrow(score, schema)


def fatigue_days(engagements: DataFrame, tweets: DataFrame, *, as_of: datetime) -> DataFrame:
    """(user_id, author_id, fatigue_days_since): days from the user's latest 'not interested' on one of
    the author's tweets to `as_of`."""
    return (
        engagements.where((F.col("action") == "not_interested") & (F.col("created_at") < F.lit(as_of)))
        .join(tweets.select("tweet_id", "author_id"), on="tweet_id", how="inner")
        .groupBy("user_id", "author_id")
        .agg(F.max("created_at").alias("_latest"))
        .select(
            "user_id",
            "author_id",
            ((F.lit(as_of).cast("double") - F.col("_latest").cast("double")) / 86400.0).alias("fatigue_days_since"),
        )
    )


def with_fatigue(rows: DataFrame, fatigue: DataFrame) -> DataFrame:
    """`rows` plus `fatigue_days_since` (`fatigue_days`; null where the user never said "not interested" to the author)."""
    return rows.join(fatigue, on=["user_id", "author_id"], how="left")


def feeds_of_whole_users(rows: pa.Table, heuristics: FeedHeuristics) -> pa.Table:
    """Every user's feed (`rank_user_feed`) from `rows` holding each of its users' rows whole and
    together (sorted by user_id), as RANKED_FEEDS_SCHEMA's columns. Only the columns the heuristics
    read become pandas; the feed's rows are taken from the Arrow rows as they are."""
    inputs = pd.DataFrame({name: rows.column(name).to_numpy(zero_copy_only=False) for name in INPUT_COLUMNS})
    inputs["_row"] = np.arange(rows.num_rows)
    users = rows.column("user_id").to_numpy()
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    feed = pd.concat(
        [rank_user_feed(inputs.iloc[start:end], heuristics) for start, end in zip(bounds[:-1], bounds[1:])],
        ignore_index=True,
    )
    out = rows.take(pa.array(feed["_row"].to_numpy(dtype=np.int64)))
    for name in (*RESCORE_COLUMNS, *FEED_COLUMNS):  # what rank_user_feed adds
        out = out.append_column(name, pa.array(feed[name].to_numpy(), type=RANKED_FEEDS_ARROW.field(name).type))
    return out.select([f.name for f in RANKED_FEEDS_SCHEMA.fields])


def feeds_of_sorted_batches(batches: Iterator[pa.RecordBatch], heuristics: FeedHeuristics) -> Iterator[pa.RecordBatch]:
    """`feeds_of_whole_users` over a partition's batches sorted by user_id, each user in this
    partition alone: a batch's last user may go on in the next batch, so its rows wait for it."""
    pending: pa.Table | None = None
    for batch in batches:
        rows = pa.Table.from_batches([batch])
        rows = rows if pending is None else pa.concat_tables([pending, rows])
        if rows.num_rows == 0:
            continue
        users = rows.column("user_id").to_numpy()
        last_user_starts = int(np.searchsorted(users, users[-1], side="left"))
        if last_user_starts:
            yield from feeds_of_whole_users(rows.slice(0, last_user_starts), heuristics).to_batches()
        pending = rows.slice(last_user_starts)
    if pending is not None and pending.num_rows:
        yield from feeds_of_whole_users(pending, heuristics).to_batches()


def apply_heuristics(scored: DataFrame, *, heuristics: FeedHeuristics) -> DataFrame:
    """Each user's feed (`core.feed_heuristics.rank_user_feed` per user) from scored rows
    `with_fatigue`, as RANKED_FEEDS_SCHEMA. The rows are partitioned by user and sorted, and each
    partition streams through `feeds_of_sorted_batches`: many users per Arrow batch, where a
    grouped `applyInPandas` converts every user's rows to pandas and back on its own (at 100K
    users that conversion took 70% of the stage)."""
    rows = (
        scored.select(
            *CARRIED,
            "light_score",
            *HEAD_COLUMNS,
            "heavy_score",
            F.col(IS_REPLY).cast("boolean").alias("is_reply"),
            F.coalesce(F.col("fatigue_days_since"), F.lit(float("nan"))).alias("fatigue_days_since"),
        )
        .repartition("user_id")
        .sortWithinPartitions("user_id")
    )

    def rank(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return feeds_of_sorted_batches(batches, heuristics)

    return rows.mapInArrow(rank, RANKED_FEEDS_SCHEMA)


def ranked_feeds(
    candidates: DataFrame,
    tables: Mapping[str, DataFrame],
    fatigue: DataFrame,
    *,
    light_model_dir: Path,
    light_features: Sequence[str],
    heavy_model_dir: Path,
    heavy_features: Sequence[str],
    config: RankingConfig = RankingConfig(),
) -> DataFrame:
    """The feeds from the full tables, in three steps: every user's pool (the `candidates` table) cut
    to `config.light_keep` by the light ranker, scored by the heavy ranker over the
    `user_tweet_features` table, shaped by the heuristics. The build makes `ranked_feeds` in one
    pass per block of users instead (`jobs.feed_pass`); this is the reference it is tested against
    (tests/test_feed_pass.py) and what `benchmarks/feed_pass.py` times it against. Each model's
    features are joined just before it (plain joins, each free to shuffle)."""
    reply = [IS_REPLY]
    prepared = feature_tables(tables, [*light_features, *heavy_features, *reply])
    pairs = candidates.select(*CARRIED)
    light = light_scores(
        join_features(pairs, prepared, light_features), model_dir=light_model_dir, feature_names=light_features
    ).select(*CARRIED, "light_score")
    survivors = with_fatigue(keep_best(light, column="light_score", keep=config.light_keep), fatigue)
    heavy = heavy_scores(
        join_features(survivors, prepared, [*heavy_features, *reply]),
        model_dir=heavy_model_dir,
        feature_names=heavy_features,
        weights=config.weights(),
    )
    return apply_heuristics(heavy, heuristics=config.heuristics)
