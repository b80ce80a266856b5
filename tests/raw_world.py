"""A tiny hand-written raw world (one row per fact), and writers for raw tables in any shape.

Tests build their expected values from these literal rows, never from the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.contract import RAW_TABLES, RAW_TABLES_BY_NAME, arrow_schema

T0 = datetime(2026, 10, 1, tzinfo=UTC)
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def as_utc(value: datetime) -> datetime:
    """Spark hands timestamps back naive, in the session time zone (UTC here)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def tiny_world() -> dict[str, list[dict]]:
    """Three users, a few follows and tweets, every table non-empty, every row valid."""
    users = [
        dict(user_id=1, handle="ada", created_at=at(-1000), is_verified=True, allow_nsfw=False, lang="en"),
        dict(user_id=2, handle="bob", created_at=at(-900), is_verified=False, allow_nsfw=True, lang=None),
        dict(user_id=3, handle="cy", created_at=at(-800), is_verified=False, allow_nsfw=False, lang="fr"),
    ]
    follows = [
        dict(follower_id=1, followee_id=2, created_at=at(-10)),
        dict(follower_id=2, followee_id=1, created_at=at(-9)),
        dict(follower_id=3, followee_id=1, created_at=at(-8)),
    ]
    tweet = dict(
        text=None,
        in_reply_to_tweet_id=None,
        quoted_tweet_id=None,
        retweet_of_tweet_id=None,
        has_media=False,
        has_video=False,
        is_nsfw=False,
        lang="en",
        deleted_at=None,
    )
    tweets = [
        {**tweet, "tweet_id": 10, "author_id": 1, "created_at": at(1), "text": "hello"},
        {**tweet, "tweet_id": 11, "author_id": 2, "created_at": at(2), "in_reply_to_tweet_id": 10},
        {**tweet, "tweet_id": 12, "author_id": 3, "created_at": at(3), "retweet_of_tweet_id": 10},
        {
            **tweet,
            "tweet_id": 13,
            "author_id": 1,
            "created_at": at(4),
            "quoted_tweet_id": 11,
            "has_media": True,
            "has_video": True,
            "deleted_at": at(5),
        },
    ]
    engagements = [
        dict(user_id=2, tweet_id=10, action="impression", created_at=at(1.5), dwell_ms=1200),
        dict(user_id=2, tweet_id=10, action="like", created_at=at(1.6), dwell_ms=None),
        dict(user_id=3, tweet_id=11, action="not_interested", created_at=at(2.5), dwell_ms=None),
    ]
    social_actions = [dict(user_id=3, target_user_id=2, action="block", created_at=at(0))]
    lists = [dict(list_id=100, owner_id=1, name="friends", is_private=False, created_at=at(-5))]
    list_members = [dict(list_id=100, user_id=2, added_at=at(-4)), dict(list_id=100, user_id=3, added_at=at(-4))]
    return dict(
        users=users,
        follows=follows,
        tweets=tweets,
        engagements=engagements,
        social_actions=social_actions,
        lists=lists,
        list_members=list_members,
    )


def write_contract_table(raw_dir: Path, name: str, rows: list[dict]) -> None:
    """Write rows with the contract's exact Parquet schema."""
    folder = raw_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(RAW_TABLES_BY_NAME[name])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-00000.parquet")


def write_loose_table(raw_dir: Path, name: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    """Write rows with whatever types they carry (for inputs that break the contract's types)."""
    folder = raw_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, folder / "part-00000.parquet")


def write_world(raw_dir: Path, world: dict[str, list[dict]]) -> Path:
    for table in RAW_TABLES:
        write_contract_table(raw_dir, table.name, world.get(table.name, []))
    return raw_dir
