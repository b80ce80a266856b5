"""Candidate-pool evaluation on hand-made tables: truncation, held-out pairs, recall, the baseline."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
from raw_world import at

from core.contract import RAW_TABLES_BY_NAME, arrow_schema
from jobs.candidate_eval import (
    heldout_positives,
    pool_recall,
    pool_size_summary,
    popularity_same_size_recall,
    truncate_raw_table,
)

CUTOFF = at(100)


def _tweets(rows):
    return pa.Table.from_pylist(
        [
            dict(tweet_id=t, author_id=a, created_at=at(h), deleted_at=None if d is None else at(d))
            for t, a, h, d in rows
        ],
        schema=pa.schema(
            [
                ("tweet_id", pa.int64()),
                ("author_id", pa.int64()),
                ("created_at", pa.timestamp("us", tz="UTC")),
                ("deleted_at", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )


def _engagements(rows):
    return pa.Table.from_pylist(
        [dict(user_id=u, tweet_id=t, action=a, created_at=at(h)) for u, t, a, h in rows],
        schema=pa.schema(
            [
                ("user_id", pa.int64()),
                ("tweet_id", pa.int64()),
                ("action", pa.string()),
                ("created_at", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )


def _pool(rows):
    return pa.Table.from_pylist(
        [dict(user_id=u, tweet_id=t, sources=s) for u, t, s in rows],
        schema=pa.schema([("user_id", pa.int64()), ("tweet_id", pa.int64()), ("sources", pa.list_(pa.string()))]),
    )


def test_truncation_drops_later_rows_and_undoes_later_deletions():
    table = RAW_TABLES_BY_NAME["tweets"]
    base = dict(
        text=None,
        in_reply_to_tweet_id=None,
        quoted_tweet_id=None,
        retweet_of_tweet_id=None,
        has_media=False,
        has_video=False,
        is_nsfw=False,
        lang=None,
    )
    rows = pa.Table.from_pylist(
        [
            dict(
                tweet_id=1, author_id=1, created_at=at(10), deleted_at=at(50), **base
            ),  # deleted before: stays deleted
            dict(
                tweet_id=2, author_id=1, created_at=at(20), deleted_at=at(150), **base
            ),  # deleted after: live at cutoff
            dict(tweet_id=3, author_id=1, created_at=at(100), deleted_at=None, **base),  # exactly at cutoff: kept
            dict(tweet_id=4, author_id=1, created_at=at(101), deleted_at=None, **base),  # later: gone
        ],
        schema=arrow_schema(table),
    )
    kept = truncate_raw_table(rows, table, cutoff=CUTOFF).to_pylist()
    assert [r["tweet_id"] for r in kept] == [1, 2, 3]
    assert [r["deleted_at"] is None for r in kept] == [False, True, True]

    members = RAW_TABLES_BY_NAME["list_members"]
    rows = pa.Table.from_pylist(
        [dict(list_id=1, user_id=2, added_at=at(99)), dict(list_id=1, user_id=3, added_at=at(200))],
        schema=arrow_schema(members),
    )
    assert truncate_raw_table(rows, members, cutoff=CUTOFF).column("user_id").to_pylist() == [2]


def test_heldout_positives_are_later_explicit_engagements_on_live_tweets():
    tweets = _tweets([(10, 1, 90, None), (11, 1, 95, 99), (12, 2, 120, None), (13, 3, 80, None)])
    engagements = _engagements(
        [
            (5, 10, "like", 101),
            (5, 10, "retweet", 102),  # one pair, two actions
            (5, 10, "like", 99),  # before the cutoff: not held out
            (6, 10, "impression", 101),  # not an explicit engagement
            (6, 11, "like", 101),  # tweet deleted before the cutoff (pair left out)
            (6, 12, "like", 121),  # tweet posted after the cutoff (counted apart)
            (7, 13, "reply", 124),
            (7, 13, "like", 125),  # 125 > cutoff + 24 h
            (3, 13, "like", 101),  # own tweet
        ]
    )
    heldout, counts = heldout_positives(engagements, tweets, cutoff=CUTOFF, horizon=timedelta(hours=24))
    assert sorted(zip(heldout.column("user_id").to_pylist(), heldout.column("tweet_id").to_pylist())) == [
        (5, 10),
        (7, 13),
    ]
    assert counts == {"heldout_pairs": 2, "heldout_pairs_on_later_tweets": 2}


def test_pool_recall_per_source_and_union():
    heldout = pa.table(
        {"user_id": pa.array([1, 1, 2, 3], pa.int64()), "tweet_id": pa.array([10, 11, 10, 12], pa.int64())}
    )
    pool = _pool([(1, 10, ["in_network", "uteg"]), (1, 12, ["twhin"]), (2, 10, ["popular"]), (3, 11, ["frs"])])
    recall = pool_recall(pool, heldout)
    assert recall["union"] == pytest.approx(2 / 4)
    assert recall["in_network"] == recall["uteg"] == recall["popular"] == pytest.approx(1 / 4)
    assert recall["twhin"] == recall["frs"] == recall["simclusters"] == 0.0


def test_popularity_same_size_pool_skips_own_and_seen_tweets():
    # Fresh tweets by popularity: 20 (3 likes), 21 (2), 22 (1), 23 (0); 24 is too old, 25 deleted.
    tweets = _tweets(
        [(20, 9, 95, None), (21, 1, 95, None), (22, 9, 96, None), (23, 9, 97, None), (24, 9, 10, None), (25, 9, 98, 99)]
    )
    engagements = _engagements(
        [
            (7, 20, "like", 96),
            (8, 20, "like", 96),
            (6, 20, "like", 96),
            (7, 21, "like", 96),
            (8, 21, "like", 96),
            (7, 22, "like", 96),
            (2, 20, "impression", 97),  # user 2 has seen 20
            *((u, 24, "like", 20) for u in range(3, 9)),  # popular but stale
            *((u, 25, "like", 98) for u in range(3, 9)),  # popular but deleted
        ]
    )
    # User 1 (author of 21) pool size 2 -> [20, 22]; user 2 (saw 20) pool size 2 -> [21, 22].
    pool = _pool([(1, 100, ["in_network"]), (1, 101, ["uteg"]), (2, 100, ["in_network"]), (2, 101, ["uteg"])])
    heldout = pa.table(
        {"user_id": pa.array([1, 1, 2, 2, 2], pa.int64()), "tweet_id": pa.array([22, 23, 21, 22, 20], pa.int64())}
    )
    recall = popularity_same_size_recall(
        pool, heldout, engagements, tweets, cutoff=CUTOFF, freshness=timedelta(hours=72)
    )
    # Found: (1, 22), (2, 21), (2, 22); not (1, 23) (rank 3 of 2) nor (2, 20) (excluded as seen).
    assert recall == pytest.approx(3 / 5)


def test_pool_size_summary():
    pool = _pool([(1, 10, ["in_network"]), (1, 11, ["in_network", "twhin"]), (2, 10, ["popular"])])
    summary = pool_size_summary(pool, pa.array([1, 2, 3, 4], pa.int64()))
    assert summary["pool_size"]["max"] == 2 and summary["pool_size"]["p50"] == 1.5
    assert summary["users_with_pool"] == 0.5
    assert summary["source_mix"] == {
        "in_network": round(2 / 3, 4),
        "popular": round(1 / 3, 4),
        "twhin": round(1 / 3, 4),
    }


def test_active_users_are_those_logged_in_the_week_before_the_cutoff():
    from evaluation.candidates import active_users

    # Two chunks, as a table read from several Parquet files arrives.
    first = _engagements([(1, 10, "impression", 99), (2, 10, "like", 100 - 24 * 7 - 1)])
    second = _engagements([(3, 11, "impression", 100.5), (4, 11, "click", 90), (1, 12, "like", 98)])
    engagements = pa.concat_tables([first, second])
    assert engagements.column("user_id").num_chunks == 2
    assert sorted(active_users(engagements, cutoff=CUTOFF).to_pylist()) == [1, 4]
