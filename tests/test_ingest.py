"""Bronze ingestion: every contract rule has an input row that breaks it and lands in quarantine
with that rule, and every valid row arrives."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from raw_world import AS_OF, T0, as_utc, at, tiny_world, write_contract_table, write_loose_table

from core.contract import RAW_TABLES_BY_NAME, arrow_schema
from jobs.ingest import RawInputError, ingest_raw_table, read_raw_table, spark_schema


def _ingest(spark, raw_dir: Path, name: str, targets: dict[str, list[dict]] | None = None):
    """Run one table through ingestion; targets are literal valid rows of referenced tables."""
    table = RAW_TABLES_BY_NAME[name]
    target_frames = {
        target: spark.createDataFrame(rows, schema=spark_schema(RAW_TABLES_BY_NAME[target]))
        for target, rows in (targets or {}).items()
    }
    result = ingest_raw_table(read_raw_table(spark, raw_dir, table), table=table, targets=target_frames, now=AS_OF)
    valid = [row.asDict() for row in result.valid.collect()]
    quarantined = [row.asDict() for row in result.quarantined.collect()]
    result.valid.unpersist()
    result.quarantined.unpersist()
    return valid, quarantined


def _rule_by(quarantined: list[dict], field: str) -> dict:
    return {json.loads(q["record"])[field]: q["rule"] for q in quarantined}


def test_users_from_csv_quarantine_each_row_rule(spark, tmp_path):
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / "users.csv").write_text(
        "user_id,handle,created_at,is_verified,allow_nsfw,lang\n"
        "1,ada,2026-01-01T00:00:00Z,true,false,en\n"
        "7,gus,2026-01-02T00:00:00Z,false,true,\n"
        "x2,bob,2026-01-01T00:00:00Z,true,false,en\n"
        "12.5,half,2026-01-01T00:00:00Z,true,false,en\n"
        ",nokey,2026-01-01T00:00:00Z,true,false,en\n"
        "3,,2026-01-01T00:00:00Z,true,false,en\n"
        "4,old,2005-01-01T00:00:00Z,true,false,en\n"
        "5,future,2030-01-01T00:00:00Z,true,false,en\n"
        "6,maybe,2026-01-01T00:00:00Z,maybe,false,en\n"
        "8,noclock,yesterday,true,false,en\n"
        "1,ada-again,2026-02-01T00:00:00Z,true,false,en\n"
    )
    valid, quarantined = _ingest(spark, tmp_path, "users")

    assert sorted((r["user_id"], r["handle"], r["lang"]) for r in valid) == [(1, "ada", "en"), (7, "gus", None)]
    assert _rule_by(quarantined, "handle") == {
        "bob": "invalid_type:user_id",
        "half": "invalid_type:user_id",
        "nokey": "null_key:user_id",
        None: "null_required:handle",
        "old": "timestamp_before_2006:created_at",
        "future": "timestamp_in_future:created_at",
        "maybe": "invalid_type:is_verified",
        "noclock": "invalid_type:created_at",
        "ada-again": "duplicate_key",
    }
    assert all(q["source_table"] == "users" and q["detail"] for q in quarantined)


def test_follows_self_dangling_and_duplicate(spark, tmp_path):
    rows = [
        dict(follower_id=1, followee_id=7, created_at=at(1)),
        dict(follower_id=7, followee_id=1, created_at=at(1)),
        dict(follower_id=1, followee_id=1, created_at=at(2)),
        dict(follower_id=1, followee_id=99, created_at=at(3)),
        dict(follower_id=98, followee_id=1, created_at=at(4)),
        dict(follower_id=1, followee_id=7, created_at=at(5)),
    ]
    write_contract_table(tmp_path, "follows", rows)
    users = [u for u in tiny_world()["users"] if u["user_id"] == 1] + [
        dict(user_id=7, handle="gus", created_at=at(-1), is_verified=False, allow_nsfw=False, lang=None)
    ]
    valid, quarantined = _ingest(spark, tmp_path, "follows", {"users": users})

    assert sorted((r["follower_id"], r["followee_id"], as_utc(r["created_at"])) for r in valid) == [
        (1, 7, at(1)),
        (7, 1, at(1)),
    ]
    by_pair = {
        (json.loads(q["record"])["follower_id"], json.loads(q["record"])["followee_id"]): q["rule"] for q in quarantined
    }
    assert by_pair == {
        ("1", "1"): "self_reference:follower_id=followee_id",
        ("1", "99"): "dangling_followee_id",
        ("98", "1"): "dangling_follower_id",
        ("1", "7"): "duplicate_key",
    }


def test_tweets_references_are_checked_transitively(spark, tmp_path):
    base = tiny_world()["tweets"][0]

    def tweet(tweet_id, hours, **kw):
        return {**base, "tweet_id": tweet_id, "author_id": 1, "created_at": at(hours), "text": f"t{tweet_id}", **kw}

    rows = [
        tweet(20, 1),
        tweet(21, 2, in_reply_to_tweet_id=20),
        tweet(22, 3, in_reply_to_tweet_id=999),
        tweet(23, 4, in_reply_to_tweet_id=22),  # its parent is quarantined: dangling too
        tweet(24, 5, deleted_at=at(4)),
        tweet(25, 6, author_id=99),
        tweet(26, 0.5, retweet_of_tweet_id=20),  # a retweet posted before the original
        tweet(27, 7, quoted_tweet_id=21),
    ]
    write_contract_table(tmp_path, "tweets", rows)
    valid, quarantined = _ingest(spark, tmp_path, "tweets", {"users": tiny_world()["users"][:1]})

    assert sorted(r["tweet_id"] for r in valid) == [20, 21, 27]
    assert _rule_by(quarantined, "tweet_id") == {
        "22": "dangling_in_reply_to_tweet_id",
        "23": "dangling_in_reply_to_tweet_id",
        "24": "timestamp_order:deleted_at<created_at",
        "25": "dangling_author_id",
        "26": "before_referenced_tweets:retweet_of_tweet_id",
    }


def test_engagements_values_ranges_references_and_time(spark, tmp_path):
    world = tiny_world()
    rows = [
        dict(user_id=2, tweet_id=10, action="impression", created_at=at(1.5), dwell_ms=1200),
        dict(user_id=2, tweet_id=10, action="like", created_at=at(1.6), dwell_ms=None),
        dict(user_id=2, tweet_id=10, action="superlike", created_at=at(1.7), dwell_ms=None),
        dict(user_id=2, tweet_id=10, action="click", created_at=at(1.8), dwell_ms=-5),
        dict(user_id=2, tweet_id=999, action="like", created_at=at(1.9), dwell_ms=None),
        dict(user_id=2, tweet_id=10, action="retweet", created_at=at(0.5), dwell_ms=None),
        dict(user_id=2, tweet_id=10, action="like", created_at=at(1.6), dwell_ms=7),
        dict(user_id=42, tweet_id=10, action="like", created_at=at(2.0), dwell_ms=None),
    ]
    write_contract_table(tmp_path, "engagements", rows)
    valid, quarantined = _ingest(
        spark, tmp_path, "engagements", {"users": world["users"], "tweets": world["tweets"][:1]}
    )

    assert sorted((r["action"], r["dwell_ms"]) for r in valid) == [("impression", 1200), ("like", 7)]
    assert sorted(q["rule"] for q in quarantined) == sorted(
        [
            "invalid_value:action",
            "out_of_range:dwell_ms",
            "dangling_tweet_id",
            "before_referenced_tweets:tweet_id",
            "duplicate_key",
            "dangling_user_id",
        ]
    )
    duplicate = next(q for q in quarantined if q["rule"] == "duplicate_key")
    # Same key and time: the tie is broken by the other columns, nulls last, so the fuller row wins.
    assert json.loads(duplicate["record"])["dwell_ms"] is None


def test_social_actions_lists_and_members(spark, tmp_path):
    world = tiny_world()
    write_contract_table(
        tmp_path,
        "social_actions",
        [
            dict(user_id=3, target_user_id=2, action="block", created_at=at(0)),
            dict(user_id=3, target_user_id=2, action="mute", created_at=at(0)),
            dict(user_id=3, target_user_id=3, action="mute", created_at=at(0)),
            dict(user_id=3, target_user_id=1, action="report", created_at=at(0)),
        ],
    )
    nullable = pa.schema([f.with_nullable(True) for f in arrow_schema(RAW_TABLES_BY_NAME["list_members"])])
    write_loose_table(
        tmp_path,
        "list_members",
        [
            dict(list_id=100, user_id=2, added_at=at(-4)),
            dict(list_id=101, user_id=2, added_at=at(-4)),
            dict(list_id=100, user_id=None, added_at=at(-4)),
        ],
        schema=nullable,
    )
    valid, quarantined = _ingest(spark, tmp_path, "social_actions", {"users": world["users"]})
    assert sorted(r["action"] for r in valid) == ["block", "mute"]
    assert sorted(q["rule"] for q in quarantined) == ["invalid_value:action", "self_reference:user_id=target_user_id"]

    valid, quarantined = _ingest(spark, tmp_path, "list_members", {"users": world["users"], "lists": world["lists"]})
    assert [(r["list_id"], r["user_id"]) for r in valid] == [(100, 2)]
    assert sorted(q["rule"] for q in quarantined) == ["dangling_list_id", "null_key:user_id"]


def test_wrong_parquet_types_are_cast_or_quarantined(spark, tmp_path):
    schema = pa.schema(
        [
            ("list_id", pa.string()),
            ("owner_id", pa.float64()),
            ("name", pa.string()),
            ("is_private", pa.string()),
            ("created_at", pa.string()),
        ]
    )
    write_loose_table(
        tmp_path,
        "lists",
        [
            dict(list_id="100", owner_id=1.0, name="ok", is_private="false", created_at="2026-10-01T00:00:00Z"),
            dict(list_id="101", owner_id=1.5, name="bad owner", is_private="true", created_at="2026-10-01T00:00:00Z"),
        ],
        schema=schema,
    )
    valid, quarantined = _ingest(spark, tmp_path, "lists", {"users": tiny_world()["users"]})
    assert [(r["list_id"], r["owner_id"], r["is_private"], as_utc(r["created_at"])) for r in valid] == [
        (100, 1, False, T0)
    ]
    assert [q["rule"] for q in quarantined] == ["invalid_type:owner_id"]


def test_missing_nullable_column_is_filled_with_nulls(spark, tmp_path):
    rows = [dict(user_id=1, handle="ada", created_at=at(0), is_verified=True, allow_nsfw=False)]
    write_loose_table(tmp_path, "users", rows)
    valid, quarantined = _ingest(spark, tmp_path, "users")
    assert [(r["user_id"], r["lang"]) for r in valid] == [(1, None)]
    assert quarantined == []


def test_missing_required_column_is_a_clear_error(spark, tmp_path):
    write_loose_table(tmp_path, "users", [dict(user_id=1, created_at=at(0), is_verified=True, allow_nsfw=False)])
    with pytest.raises(RawInputError, match=r"users: missing required column\(s\) \['handle'\]"):
        read_raw_table(spark, tmp_path, RAW_TABLES_BY_NAME["users"])


@pytest.mark.parametrize(
    "make_files, message",
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.mkdir(), "no .parquet or .csv files"),
        (lambda d: (d.mkdir(), (d / "part-0.parquet").write_bytes(b"")), "is an empty file"),
        (lambda d: (d.mkdir(), (d / "part-0.parquet").write_bytes(b"PAR1\x00\x01garbage")), "not a readable Parquet"),
        (
            lambda d: (d.mkdir(), (d / "a.parquet").write_bytes(b"x"), (d / "b.csv").write_text("x")),
            "mixes Parquet and CSV",
        ),
    ],
    ids=["missing-folder", "no-files", "empty-file", "truncated-parquet", "mixed-formats"],
)
def test_unreadable_input_is_a_clear_error(spark, tmp_path, make_files, message):
    make_files(tmp_path / "users")
    with pytest.raises(RawInputError, match=message):
        read_raw_table(spark, tmp_path, RAW_TABLES_BY_NAME["users"])


def test_truncated_real_parquet_names_the_file(spark, tmp_path):
    write_contract_table(tmp_path, "users", tiny_world()["users"])
    path = tmp_path / "users" / "part-00000.parquet"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(RawInputError, match="part-00000.parquet is not a readable Parquet file"):
        read_raw_table(spark, tmp_path, RAW_TABLES_BY_NAME["users"])
