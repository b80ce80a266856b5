"""The learned RealGraph combination: xgboost predicting next-period interaction from the counts.

Training data is small enough to collect (one row per interacting pair); scoring runs inside Spark
partitions on Arrow batches (`mapInPandas`), the booster shipped once per task as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.graph_eval import roc_auc
from features.realgraph import (
    RealGraphConfig,
    feature_columns,
    interaction_features,
    labelled_features,
    next_period_labels,
    recent_count_score,
)

XGB_PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 1.0,
    "min_child_weight": 5,
    "tree_method": "hist",
    "nthread": 2,
}
BOOST_ROUNDS = 120
SCORE_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.LongType()),
        T.StructField("author_id", T.LongType()),
        T.StructField("score", T.DoubleType()),
    ]
)


@dataclass(frozen=True)
class TrainedRealGraph:
    model_bytes: bytes
    feature_names: tuple[str, ...]
    train_rows: int
    positive_rate: float
    feature_importance: dict[str, float]


def train_realgraph_model(training: pd.DataFrame, *, feature_names: list[str], seed: int) -> TrainedRealGraph:
    """Fit the booster on rows of `feature_names` + `label`."""
    import xgboost as xgb

    matrix = xgb.DMatrix(
        training[feature_names].to_numpy(np.float32),
        label=training["label"].to_numpy(),
        feature_names=list(feature_names),
    )
    booster = xgb.train({**XGB_PARAMS, "seed": seed}, matrix, num_boost_round=BOOST_ROUNDS)
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return TrainedRealGraph(
        model_bytes=bytes(booster.save_raw("json")),
        feature_names=tuple(feature_names),
        train_rows=len(training),
        positive_rate=float(training["label"].mean()) if len(training) else 0.0,
        feature_importance={k: round(v / total, 4) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])[:10]},
    )


def score_pairs(features: DataFrame, model: TrainedRealGraph) -> DataFrame:
    """(user_id, author_id, score = predicted probability of interacting next period)."""
    model_bytes, names = model.model_bytes, list(model.feature_names)

    def predict(batches):
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(model_bytes))
        for batch in batches:
            matrix = xgb.DMatrix(batch[names].to_numpy(np.float32), feature_names=names)
            yield pd.DataFrame(
                {
                    "user_id": batch["user_id"].astype("int64"),
                    "author_id": batch["author_id"].astype("int64"),
                    "score": booster.predict(matrix).astype("float64"),
                }
            )

    return features.select("user_id", "author_id", *names).mapInPandas(predict, schema=SCORE_SCHEMA)


def sample_pairs(pairs: DataFrame, *, max_rows: int, seed: int) -> DataFrame:
    """About `max_rows` of `pairs`, chosen by a hash of (user_id, author_id, seed): the same rows every
    run, each pair in or out independently of the others, so the label rate is kept."""
    total = pairs.count()
    if total <= max_rows:
        return pairs
    buckets = 1_000_000
    keep = int(buckets * max_rows / total)
    bucket = F.pmod(F.xxhash64("user_id", "author_id", F.lit(seed)), F.lit(buckets))
    return pairs.where(bucket < keep)


def train_on_recent_periods(
    interactions: DataFrame, follows: DataFrame, *, as_of: datetime, config: RealGraphConfig, seed: int
) -> TrainedRealGraph:
    """Learn next-period interaction from the last `training_periods` periods before `as_of`:
    for each, features as of its start and labels from within it."""
    period = timedelta(days=config.label_days)
    frames = []
    for back in range(1, config.training_periods + 1):
        cutoff = as_of - back * period
        features = interaction_features(interactions, follows, cutoff=cutoff, config=config)
        labels = next_period_labels(interactions, start=cutoff, end=cutoff + period)
        labelled = labelled_features(features, labels).cache()
        frames.append(sample_pairs(labelled, max_rows=config.max_training_rows_per_period, seed=seed).toPandas())
        labelled.unpersist()
    training = pd.concat(frames, ignore_index=True)
    return train_realgraph_model(training, feature_names=feature_columns(config), seed=seed)


def evaluate_next_period(
    interactions: DataFrame, follows: DataFrame, *, as_of: datetime, config: RealGraphConfig, seed: int
) -> dict:
    """Next-period interaction prediction, RealGraph vs raw recent counts, by ROC AUC.

    The model is trained on the periods before the last one, then both scorers rank the pairs
    known at as_of - 1 period against what happened in the last period: nothing from the test
    period is seen in training.
    """
    test_cutoff = as_of - timedelta(days=config.label_days)
    model = train_on_recent_periods(interactions, follows, as_of=test_cutoff, config=config, seed=seed)
    test_features = interaction_features(interactions, follows, cutoff=test_cutoff, config=config).cache()
    labels = next_period_labels(interactions, start=test_cutoff, end=as_of)
    learned = labelled_features(score_pairs(test_features, model), labels).toPandas()
    counts = labelled_features(recent_count_score(test_features), labels).toPandas()
    test_features.unpersist()
    return {
        "metric": "roc_auc",
        "realgraph": round(roc_auc(learned["label"].to_numpy(), learned["score"].to_numpy()), 4),
        "recent_counts": round(roc_auc(counts["label"].to_numpy(), counts["score"].to_numpy()), 4),
        "test_pairs": int(len(learned)),
        "test_positive_rate": round(float(learned["label"].mean()), 4) if len(learned) else 0.0,
        "train_rows": model.train_rows,
    }
