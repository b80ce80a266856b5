"""RealGraph: how strongly a user interacts with an author, from decayed engagement counts.

Per (user, author) and action: counts in several windows before a cutoff and a decayed count
(each interaction weighs 0.5 ** (age / half-life)). Twitter combines these with a model trained to
predict next-day interaction; so does this job: the model is trained on features as of
`as_of - label_days` with labels from the last `label_days`, then scores features as of `as_of`.
A fixed-weight combination (`fixed_weight_score`) is kept as the documented fallback and for
comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

POSITIVE_ACTIONS = (
    "like",
    "retweet",
    "reply",
    "quote",
    "click",
    "profile_click",
    "video_playback50",
    "bookmark",
    "share",
)
NEGATIVE_ACTIONS = ("not_interested", "report")
# Exposure: how often the author's tweets were shown to the user. Not an interaction, but what the
# next period's interactions depend on most (the timeline shows followed authors).
EXPOSURE_ACTIONS = ("impression",)
# Heuristic weights of the fallback score, in the spirit of the heavy ranker's action weights.
DEFAULT_ACTION_WEIGHTS = {
    "like": 1.0,
    "retweet": 2.0,
    "reply": 3.0,
    "quote": 2.0,
    "click": 0.5,
    "profile_click": 2.0,
    "video_playback50": 0.3,
    "bookmark": 1.5,
    "share": 1.5,
    "not_interested": -5.0,
    "report": -20.0,
}


@dataclass(frozen=True)
class RealGraphConfig:
    windows_days: tuple[int, ...] = (1, 7, 28)
    half_life_days: float = 7.0
    actions: tuple[str, ...] = POSITIVE_ACTIONS + NEGATIVE_ACTIONS + EXPOSURE_ACTIONS
    label_days: float = 1.0
    # The model learns from this many consecutive periods before the one it predicts.
    training_periods: int = 3
    # At most this many (user, author) rows of each period are collected to train on (a uniform,
    # deterministic sample by pair hash): the driver holds them all at once.
    max_training_rows_per_period: int = 300_000
    top_k: int = 1000
    action_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ACTION_WEIGHTS))


def feature_columns(config: RealGraphConfig) -> list[str]:
    columns = []
    for action in config.actions:
        columns += [f"{action}_{w}d" for w in config.windows_days] + [f"{action}_decayed"]
    return columns + ["total_decayed", "hours_since_last", "follows_author", "follow_age_days"]


def user_author_interactions(engagements: DataFrame, tweets: DataFrame, *, actions: tuple[str, ...]) -> DataFrame:
    """(user_id, author_id, action, created_at) of engagements with someone else's tweets."""
    authors = tweets.select("tweet_id", "author_id")
    return (
        engagements.where(F.col("action").isin(*actions))
        .join(authors, on="tweet_id", how="inner")
        .where(F.col("user_id") != F.col("author_id"))
        .select("user_id", "author_id", "action", "created_at")
    )


def interaction_features(
    interactions: DataFrame, follows: DataFrame, *, cutoff: datetime, config: RealGraphConfig
) -> DataFrame:
    """One row per (user, author) with any interaction or exposure before `cutoff`; the columns of
    `feature_columns(config)`. Windows and decay are measured back from `cutoff`; the follow edge
    counts only if it existed at `cutoff`."""
    before = interactions.where(F.col("created_at") < F.lit(cutoff))
    age_hours = (F.lit(cutoff).cast("long") - F.col("created_at").cast("long")) / 3600.0
    decay = F.pow(F.lit(0.5), age_hours / F.lit(config.half_life_days * 24.0))
    aggregations = []
    for action in config.actions:
        is_action = F.col("action") == action
        for days in config.windows_days:
            in_window = is_action & (age_hours <= days * 24.0)
            aggregations.append(F.sum(F.when(in_window, 1.0).otherwise(0.0)).alias(f"{action}_{days}d"))
        aggregations.append(F.sum(F.when(is_action, decay).otherwise(0.0)).alias(f"{action}_decayed"))
    positive = F.col("action").isin(*POSITIVE_ACTIONS)
    aggregations.append(F.sum(F.when(positive, decay).otherwise(0.0)).alias("total_decayed"))
    aggregations.append(F.min(F.when(positive, age_hours)).alias("hours_since_last"))
    edges = follows.where(F.col("created_at") < F.lit(cutoff)).select(
        F.col("follower_id").alias("user_id"),
        F.col("followee_id").alias("author_id"),
        ((F.lit(cutoff).cast("long") - F.col("created_at").cast("long")) / 86400.0).alias("follow_age_days"),
    )
    return (
        before.groupBy("user_id", "author_id")
        .agg(*aggregations)
        .join(edges, on=["user_id", "author_id"], how="left")
        .select(
            "*",
            F.when(F.col("follow_age_days").isNotNull(), 1.0).otherwise(0.0).alias("follows_author"),
        )
        .select(*(["user_id", "author_id"] + feature_columns(config)))
        .fillna(-1.0, subset=["follow_age_days", "hours_since_last"])
    )


def next_period_labels(interactions: DataFrame, *, start: datetime, end: datetime) -> DataFrame:
    """(user_id, author_id, label=1) for pairs with a positive interaction in [start, end)."""
    return (
        interactions.where(
            F.col("action").isin(*POSITIVE_ACTIONS)
            & (F.col("created_at") >= F.lit(start))
            & (F.col("created_at") < F.lit(end))
        )
        .select("user_id", "author_id")
        .distinct()
        .withColumn("label", F.lit(1))
    )


def labelled_features(features: DataFrame, labels: DataFrame) -> DataFrame:
    return features.join(labels, on=["user_id", "author_id"], how="left").withColumn(
        "label", F.coalesce(F.col("label"), F.lit(0))
    )


def fixed_weight_score(features: DataFrame, *, config: RealGraphConfig) -> DataFrame:
    """(user_id, author_id, score): the weighted sum of decayed counts."""
    score = sum(
        (F.col(f"{action}_decayed") * F.lit(config.action_weights.get(action, 0.0)) for action in config.actions),
        F.lit(0.0),
    )
    return features.select("user_id", "author_id", score.alias("score"))


def recent_count_score(features: DataFrame, *, days: int = 7) -> DataFrame:
    """The baseline: raw count of positive interactions in the last `days` days."""
    total = sum((F.col(f"{a}_{days}d") for a in POSITIVE_ACTIONS), F.lit(0.0))
    return features.select("user_id", "author_id", total.alias("score"))


def top_k_per_user(scored: DataFrame, *, k: int) -> DataFrame:
    """(user_id, author_id, score, rank): each user's k highest scores."""
    window = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("author_id"))
    return (
        scored.withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= k)
        .select("user_id", "author_id", F.col("score").cast("double"), F.col("rank").cast("int"))
    )


def label_window(as_of: datetime, config: RealGraphConfig) -> tuple[datetime, datetime]:
    """(cutoff of the training features, end of their labels) = (as_of - label period, as_of)."""
    return as_of - timedelta(days=config.label_days), as_of
