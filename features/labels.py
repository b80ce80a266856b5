"""Training labels from the impression log: one row per impression, one 0/1 column per ranker head.

An action is credited to the user's latest impression of the same tweet at or before it, if that
impression is at most `label_window` earlier; actions with no such impression (a like from a profile
visit) label nothing. Home Mixer's heavy ranker heads map onto the contract's actions:

* like, retweet, reply, profile_click (good profile click), video_playback50, report: the action;
* good_click: a click whose dwell is at least `good_click_dwell_ms`;
* negative_feedback: not_interested;
* reply_engaged_by_author: the user replied and the tweet's author engaged back with one of the
  user's tweets (any explicit action) within `label_window` of the reply. The contract carries no
  reply tweets for `reply` actions, so the author's engagement with the replier stands in for
  engagement with the reply itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from core.heads import HEADS

# Label column -> the contract action it comes from (good_click and reply_engaged_by_author are derived).
ACTION_OF_LABEL = {
    "like": "like",
    "retweet": "retweet",
    "reply": "reply",
    "good_profile_click": "profile_click",
    "video_playback50": "video_playback50",
    "negative_feedback": "not_interested",
    "report": "report",
}
AUTHOR_ENGAGEMENT_ACTIONS = ("like", "retweet", "reply", "quote")


@dataclass(frozen=True)
class LabelConfig:
    label_window: timedelta = timedelta(hours=24)
    good_click_dwell_ms: int = 10_000


def impression_labels(
    engagements: DataFrame, tweets: DataFrame, *, start: datetime, end: datetime, config: LabelConfig = LabelConfig()
) -> DataFrame:
    """(user_id, tweet_id, author_id, impression_time, impression_dwell_ms, <HEADS>) for each
    impression in [start, end) of a tweet by someone else."""
    window_us = int(config.label_window.total_seconds() * 1_000_000)
    impressions = (
        engagements.where(
            (F.col("action") == "impression")
            & (F.col("created_at") >= F.lit(start))
            & (F.col("created_at") < F.lit(end))
        )
        .join(tweets.select("tweet_id", "author_id"), on="tweet_id", how="inner")
        .where(F.col("user_id") != F.col("author_id"))
        .select(
            "user_id",
            "tweet_id",
            "author_id",
            F.col("created_at").alias("impression_time"),
            F.col("dwell_ms").alias("impression_dwell_ms"),
        )
        .dropDuplicates(["user_id", "tweet_id", "impression_time"])
    )
    actions = engagements.where(
        (F.col("action") != "impression")
        & (F.col("created_at") >= F.lit(start))
        & (F.col("created_at") < F.lit(end) + F.expr(f"INTERVAL {window_us} MICROSECONDS"))
    ).select("user_id", "tweet_id", "action", F.col("created_at").alias("action_time"), "dwell_ms")
    credited = _credit_to_latest_impression(impressions, actions, window_us=window_us)
    flags = [
        F.max(F.when(F.col("action") == action, 1).otherwise(0)).alias(label)
        for label, action in ACTION_OF_LABEL.items()
    ]
    flags.append(
        F.max(
            F.when((F.col("action") == "click") & (F.col("dwell_ms") >= config.good_click_dwell_ms), 1).otherwise(0)
        ).alias("good_click")
    )
    per_impression = credited.groupBy("user_id", "tweet_id", "impression_time").agg(
        *flags, F.min(F.when(F.col("action") == "reply", F.col("action_time"))).alias("reply_time")
    )
    labelled = impressions.join(per_impression, on=["user_id", "tweet_id", "impression_time"], how="left").fillna(
        0, subset=[c for c in HEADS if c != "reply_engaged_by_author"]
    )
    return _with_reply_engaged_by_author(labelled, engagements, tweets, window_us=window_us).select(
        "user_id", "tweet_id", "author_id", "impression_time", "impression_dwell_ms", *HEADS
    )


def _credit_to_latest_impression(impressions: DataFrame, actions: DataFrame, *, window_us: int) -> DataFrame:
    """Each action joined to the latest impression of its (user, tweet) at or before it, within the window."""
    candidates = actions.join(
        impressions.select("user_id", "tweet_id", "impression_time"), on=["user_id", "tweet_id"], how="inner"
    ).where(
        (F.col("impression_time") <= F.col("action_time"))
        & (F.unix_micros("action_time") - F.unix_micros("impression_time") <= window_us)
    )
    latest = Window.partitionBy("user_id", "tweet_id", "action", "action_time").orderBy(F.col("impression_time").desc())
    return candidates.withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1).drop("_n")


def _with_reply_engaged_by_author(
    labelled: DataFrame, engagements: DataFrame, tweets: DataFrame, *, window_us: int
) -> DataFrame:
    """reply_engaged_by_author = 1 when the impression led to a reply and the tweet's author engaged with
    one of the replier's tweets within the window after the reply."""
    author_back = (
        engagements.where(F.col("action").isin(*AUTHOR_ENGAGEMENT_ACTIONS))
        .select(F.col("user_id").alias("author_id"), "tweet_id", F.col("created_at").alias("back_time"))
        .join(tweets.select("tweet_id", F.col("author_id").alias("user_id")), on="tweet_id", how="inner")
        .select("author_id", "user_id", "back_time")
    )
    replies = labelled.where(F.col("reply_time").isNotNull()).select(
        "user_id", "tweet_id", "impression_time", "author_id", "reply_time"
    )
    engaged = (
        replies.join(author_back, on=["author_id", "user_id"], how="inner")
        .where(
            (F.col("back_time") >= F.col("reply_time"))
            & (F.unix_micros("back_time") - F.unix_micros("reply_time") <= window_us)
        )
        .select("user_id", "tweet_id", "impression_time")
        .distinct()
        .withColumn("reply_engaged_by_author", F.lit(1))
    )
    return labelled.join(engaged, on=["user_id", "tweet_id", "impression_time"], how="left").fillna(
        0, subset=["reply_engaged_by_author"]
    )


def time_split(
    examples: DataFrame, *, validation_start: datetime, test_start: datetime, time_column: str = "impression_time"
) -> DataFrame:
    """Adds `split`: train before `validation_start`, validation until `test_start`, test after."""
    if not validation_start <= test_start:
        raise ValueError(f"validation_start {validation_start} must not be after test_start {test_start}")
    t = F.col(time_column)
    return examples.withColumn(
        "split",
        F.when(t < F.lit(validation_start), "train").when(t < F.lit(test_start), "validation").otherwise("test"),
    )
