"""Impression labels and the time split on hand-made logs (expected labels worked out by hand)."""

from __future__ import annotations

import pytest
from raw_world import at

from core.contract import RAW_TABLES_BY_NAME
from core.heads import HEADS
from features.labels import LabelConfig, impression_labels, time_split
from jobs.ingest import spark_schema


def _engagements(spark, rows):
    data = [dict(user_id=u, tweet_id=t, action=a, created_at=at(h), dwell_ms=d) for u, t, a, h, d in rows]
    return spark.createDataFrame(data, schema=spark_schema(RAW_TABLES_BY_NAME["engagements"]))


def _tweets(spark, rows):
    base = dict(
        text=None,
        in_reply_to_tweet_id=None,
        quoted_tweet_id=None,
        retweet_of_tweet_id=None,
        has_media=False,
        has_video=False,
        is_nsfw=False,
        lang=None,
        deleted_at=None,
    )
    data = [dict(tweet_id=t, author_id=a, created_at=at(h), **base) for t, a, h in rows]
    return spark.createDataFrame(data, schema=spark_schema(RAW_TABLES_BY_NAME["tweets"]))


def test_labels_credit_the_latest_impression_within_the_window(spark):
    # Tweets: 10 by author 2, 11 by author 3, 20 by user 1 (the replier's own tweet), 21 by user 4.
    tweets = _tweets(spark, [(10, 2, 0), (11, 3, 0), (20, 1, 0), (21, 4, 0)])
    engagements = _engagements(
        spark,
        [
            (1, 10, "impression", 10, 900),
            (1, 10, "like", 10.01, None),
            (1, 10, "click", 10.02, 15_000),  # good click (>= 10 s)
            (1, 10, "reply", 10.03, None),
            (2, 20, "like", 11, None),  # the author (2) likes the replier's tweet: reply engaged by author
            (1, 11, "impression", 12, 500),
            (1, 11, "click", 12.01, 2_000),  # short click: not a good click
            (1, 11, "impression", 13, 700),  # a second impression of 11: later actions go to it
            (1, 11, "not_interested", 13.5, None),
            (1, 11, "report", 40, None),  # 27 h later: outside the 24 h window, credited nowhere
            (4, 10, "impression", 14, 100),
            (4, 10, "reply", 14.1, None),  # reply, but author 2 never engages with user 4's tweets
            (4, 10, "like", 9, None),  # before any impression: labels nothing
            (3, 11, "impression", 15, 100),  # own tweet: not an example
            (5, 10, "impression", 200, 100),  # after `end`
        ],
    )
    rows = impression_labels(engagements, tweets, start=at(0), end=at(100), config=LabelConfig()).collect()
    got = {
        (r["user_id"], r["tweet_id"], r["impression_time"].replace(tzinfo=None)): {k: r[k] for k in HEADS} for r in rows
    }
    zero = dict.fromkeys(HEADS, 0)
    naive = lambda h: at(h).replace(tzinfo=None)  # noqa: E731
    assert got == {
        (1, 10, naive(10)): {**zero, "like": 1, "good_click": 1, "reply": 1, "reply_engaged_by_author": 1},
        (1, 11, naive(12)): zero,
        (1, 11, naive(13)): {**zero, "negative_feedback": 1},
        (4, 10, naive(14)): {**zero, "reply": 1},
    }


def test_time_split(spark):
    examples = spark.createDataFrame([(1, at(1)), (2, at(5)), (3, at(9))], "id long, impression_time timestamp")
    split = {r["id"]: r["split"] for r in time_split(examples, validation_start=at(5), test_start=at(9)).collect()}
    assert split == {1: "train", 2: "validation", 3: "test"}
    with pytest.raises(ValueError):
        time_split(examples, validation_start=at(9), test_start=at(5))


def test_tweet_counts_before_each_impression_cover_only_the_window(spark):
    from features.realtime import tweet_counts_before

    engagements = _engagements(
        spark,
        [
            (7, 10, "like", 1, None),
            (8, 10, "like", 5, None),
            (9, 10, "retweet", 5.5, None),
            (7, 10, "impression", 5.9, 100),
            (6, 10, "like", 6, None),  # at the request's own moment: not before it
            (6, 11, "like", 5, None),  # another tweet
        ],
    )
    requests = spark.createDataFrame(
        [(1, 10, at(6)), (2, 10, at(6)), (3, 11, at(0.5))], "user_id long, tweet_id long, impression_time timestamp"
    )
    counts = {
        "likes_1h": (("like",), 1),
        "likes_6h": (("like",), 6),
        "engagements_6h": (("like", "retweet"), 6),
        "impressions_1h": (("impression",), 1),
    }
    rows = {r["user_id"]: r for r in tweet_counts_before(requests, engagements, counts=counts).collect()}
    # [5 h, 6 h) holds the like at exactly 5 h: the window's start is inclusive, its end exclusive.
    assert {k: rows[1][k] for k in counts} == {
        "likes_1h": 1.0,
        "likes_6h": 2.0,
        "engagements_6h": 3.0,
        "impressions_1h": 1.0,
    }
    assert {k: rows[2][k] for k in counts} == {k: rows[1][k] for k in counts}  # duplicates kept
    assert rows[3]["likes_6h"] == 0.0 and rows[3]["tweet_id"] == 11
