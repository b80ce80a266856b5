"""Batch ranking: candidates -> feature vectors -> light ranker prune -> heavy ranker -> feed heuristics.

Everything a model runs on moves through Arrow batches (`mapInArrow`, `applyInPandas`), never a
row-wise Python UDF. A model is loaded once per Python worker process (`_loaded`, keyed by its
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

from features.labels import LABELS
from features.registry import ASSETS, ENTITY_OF_ASSET, FEATURES, keys_of_asset
from features.vectors import qualified, with_default
from jobs.feed_heuristics import FeedHeuristics, rank_user_feed

HEAD_COLUMNS = tuple(f"p_{head}" for head in LABELS)
FEATURE_TABLES = {asset: (ENTITY_OF_ASSET[asset], keys_of_asset(asset)) for asset in ASSETS}  # asset -> (entity, keys)
# Candidate columns carried from the pool to the feed.
CARRIED = ("user_id", "tweet_id", "author_id", "tweet_created_at", "is_in_network", "sources",
           "social_proof_user_ids", "social_proof_count")

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


@dataclass(frozen=True)
class RankingConfig:
    light_keep: int = 500                     # candidates per user the heavy ranker scores
    head_weights: Mapping[str, float] = field(default_factory=dict)   # {} = DEFAULT_HEAD_WEIGHTS
    heuristics: FeedHeuristics = FeedHeuristics()

    def __post_init__(self) -> None:
        if self.light_keep < 1:
            raise ValueError(f"light_keep must be at least 1, got {self.light_keep}")
        unknown = set(self.head_weights) - set(LABELS)
        if unknown:
            raise ValueError(f"head_weights names unknown heads {sorted(unknown)} (heads: {LABELS})")

    def weights(self) -> dict[str, float]:
        from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS

        return {**DEFAULT_HEAD_WEIGHTS, **self.head_weights}


def feature_vectors(pairs: DataFrame, tables: Mapping[str, DataFrame], feature_names: Sequence[str]) -> DataFrame:
    """`pairs` (user_id, tweet_id, author_id, ...) with the named features (qualified names) joined from
    the feature tables, missing rows at the declared defaults."""
    wanted = set(feature_names)
    out = pairs
    for asset, (entity, keys) in FEATURE_TABLES.items():
        if not any(name.startswith(f"{entity}__") for name in wanted):
            continue
        table = qualified(tables[asset], asset, entity)
        columns = [c for c in table.columns if c in wanted]
        out = out.join(table.select(*keys, *columns), on=list(keys), how="left")
    by_name = {f.qualified_name: f for f in FEATURES}
    return out.select(*pairs.columns, *[with_default(by_name[name]) for name in feature_names])


def with_features(rows: DataFrame, tables: Mapping[str, DataFrame], feature_names: Sequence[str]) -> DataFrame:
    """`rows` plus those of the named features it does not carry yet (`feature_vectors`)."""
    return feature_vectors(rows, tables, [name for name in dict.fromkeys(feature_names) if name not in rows.columns])


_MODELS: dict[tuple[str, str], object] = {}


def _loaded(kind: str, directory: str):
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
        model = _loaded("light", directory)
        for batch in batches:
            scores = model.predict(_matrix(batch, names)).astype(np.float64)
            yield batch.append_column("light_score", pa.array(scores))

    return vectors.mapInArrow(score, schema)


def keep_best(scored: DataFrame, *, column: str, keep: int) -> DataFrame:
    """Each user's `keep` rows with the highest `column` (ties: tweet_id)."""
    order = Window.partitionBy("user_id").orderBy(F.col(column).desc(), F.col("tweet_id"))
    return scored.withColumn("_n", F.row_number().over(order)).where(F.col("_n") <= keep).drop("_n")


def heavy_scores(vectors: DataFrame, *, model_dir: Path, feature_names: Sequence[str],
                 weights: Mapping[str, float]) -> DataFrame:
    """`vectors` plus the calibrated probability of every head (`p_<head>`) and `heavy_score` =
    Σ weight × probability."""
    directory, names, weights = str(model_dir), list(feature_names), dict(weights)
    schema = T.StructType(vectors.schema.fields
                          + [T.StructField(c, T.DoubleType(), False) for c in (*HEAD_COLUMNS, "heavy_score")])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from models.heavy_ranker import RankerInputs, final_scores

        model = _loaded("heavy", directory)
        for batch in batches:
            inputs = RankerInputs(dense=_matrix(batch, names),
                                  user_ids=batch.column("user_id").to_numpy(zero_copy_only=False),
                                  author_ids=batch.column("author_id").to_numpy(zero_copy_only=False))
            probabilities = model.probabilities(inputs)
            by_head = dict(zip(model.heads, probabilities.T))
            for head in LABELS:
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
        .groupBy("user_id", "author_id").agg(F.max("created_at").alias("_latest"))
        .select("user_id", "author_id",
                ((F.lit(as_of).cast("double") - F.col("_latest").cast("double")) / 86400.0).alias("fatigue_days_since"))
    )


def apply_heuristics(scored: DataFrame, fatigue: DataFrame, *, heuristics: FeedHeuristics) -> DataFrame:
    """Each user's feed (`jobs.feed_heuristics.rank_user_feed` per user, `applyInPandas`), as RANKED_FEEDS_SCHEMA."""
    rows = (
        scored.join(fatigue, on=["user_id", "author_id"], how="left")
        .select(*CARRIED, "light_score", *HEAD_COLUMNS, "heavy_score",
                F.col("tweet__is_reply").cast("boolean").alias("is_reply"),
                F.coalesce(F.col("fatigue_days_since"), F.lit(float("nan"))).alias("fatigue_days_since"))
    )
    columns = [f.name for f in RANKED_FEEDS_SCHEMA.fields]

    def rank(user_rows: pd.DataFrame) -> pd.DataFrame:
        return rank_user_feed(user_rows, heuristics)[columns]

    return rows.groupBy("user_id").applyInPandas(rank, RANKED_FEEDS_SCHEMA)


def light_ranker_recall(candidates: DataFrame, tables: Mapping[str, DataFrame], *, light_model_dir: Path,
                        light_features: Sequence[str], heavy_model_dir: Path, heavy_features: Sequence[str],
                        weights: Mapping[str, float], keep: int, top: int = 100, sample_users: int = 200) -> dict:
    """How much of the heavy ranker's top `top` per user survives the light ranker's cut to `keep`,
    on a sample of users (hash order, so the same users each run) whose whole pools the heavy ranker
    scores: the share of (user, top tweet) pairs kept, and the mean over users."""
    pairs = candidates.select(*CARRIED)
    users = pairs.select("user_id").distinct().orderBy(F.xxhash64("user_id"), "user_id").limit(sample_users)
    sample = pairs.join(users, on="user_id", how="left_semi")
    # Only the sampled users' rows of the per-user tables take part in the joins.
    tables = {asset: table.join(users, on="user_id", how="left_semi") if "user_id" in FEATURE_TABLES[asset][1] else table
              for asset, table in tables.items()}
    light = light_scores(feature_vectors(sample, tables, light_features), model_dir=light_model_dir,
                         feature_names=light_features)
    heavy = heavy_scores(with_features(light, tables, heavy_features), model_dir=heavy_model_dir,
                         feature_names=heavy_features, weights=weights)
    by = lambda column: Window.partitionBy("user_id").orderBy(F.col(column).desc(), F.col("tweet_id"))  # noqa: E731
    ranked = (heavy.withColumn("_light", F.row_number().over(by("light_score")))
              .withColumn("_heavy", F.row_number().over(by("heavy_score")))
              .where(F.col("_heavy") <= top)
              .groupBy("user_id").agg(F.avg((F.col("_light") <= keep).cast("double")).alias("_recall"),
                                       F.sum((F.col("_light") <= keep).cast("long")).alias("_kept"),
                                       F.count(F.lit(1)).alias("_top")))
    row = ranked.agg(F.avg("_recall"), F.sum("_kept"), F.sum("_top"), F.count(F.lit(1))).first()
    return {"mean_user_recall": None if row[0] is None else round(float(row[0]), 4),
            "pair_recall": None if not row[2] else round(int(row[1]) / int(row[2]), 4),
            "users": int(row[3]), "keep": keep, "top": top}


def ranked_feeds(candidates: DataFrame, tables: Mapping[str, DataFrame], fatigue: DataFrame, *,
                 light_model_dir: Path, light_features: Sequence[str], heavy_model_dir: Path,
                 heavy_features: Sequence[str], config: RankingConfig = RankingConfig()) -> DataFrame:
    """The `ranked_feeds` table: every user's pool cut to `config.light_keep` by the light ranker,
    scored by the heavy ranker, shaped by the heuristics (at most `heuristics.max_rows` per user)."""
    pairs = candidates.select(*CARRIED)
    light = light_scores(feature_vectors(pairs, tables, light_features), model_dir=light_model_dir,
                         feature_names=light_features)
    # The light features ride through the prune (its sort moves them anyway): the survivors join
    # only the features the heavy ranker reads beyond them.
    survivors = keep_best(light, column="light_score", keep=config.light_keep)
    heavy = heavy_scores(with_features(survivors, tables, [*heavy_features, "tweet__is_reply"]),
                         model_dir=heavy_model_dir, feature_names=heavy_features, weights=config.weights())
    return apply_heuristics(heavy, fatigue, heuristics=config.heuristics)
