"""What a publication puts in Redis, dataset by dataset: the SQL (DuckDB over pinned Delta
snapshots) that turns warehouse tables into one value per key of a key space
(core/redis_layout.py, docs/redis_layout.md).

Every dataset is read as of the build time the feeds were built at (`as_of`): rows of the raw
tables stamped later, and tweets deleted by then, are left out; the derived tables
(`user_follow_counts`, `follow_graph_two_hop`, `tweet_features`) are those of the same build.
Timelines keep the tweets of the last `window_days`; serving adds what happened since from its
request-time state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.redis_layout import (
    AUTHOR_TWEETS,
    BLOCKED_MUTED,
    FEED_COLUMNS,
    FEEDS,
    FOLLOWING,
    LIST_TIMELINES,
    LISTS,
    POPULAR,
    POPULAR_ID,
    PROFILES,
    PROMOTED,
    TWEETS,
    WHO_TO_FOLLOW,
    KeySpace,
    encode_record,
)
from core.sources import CANDIDATE_SOURCES

FEEDS_TABLE = "ranked_feeds"


@dataclass(frozen=True)
class PublicationConfig:
    window_days: int = 7  # tweets in author and list timelines (and their metadata)
    author_timeline_length: int = 200
    list_timeline_length: int = 200
    who_to_follow_length: int = 20
    popular_length: int = 500
    ads_inventory_length: int = 200


@dataclass(frozen=True)
class Dataset:
    """One key space's values, from `tables`: `records(con, as_of, config)` yields (id, encoded value)
    in id order, over a DuckDB connection where each table is a view of its pinned snapshot."""

    space: KeySpace
    tables: tuple[str, ...]
    records: Callable[..., Iterator[tuple[int, bytes]]]


def _feed_column_sql(name: str, dtype: str) -> str:
    if name == "created_at_ms":
        return _epoch_ms("tweet_created_at")
    if name == "sources":
        bits = " + ".join(
            f"list_contains(sources, '{source}')::INTEGER * {1 << bit}" for bit, source in enumerate(CANDIDATE_SOURCES)
        )
        return f"({bits})::UTINYINT"
    return f"{name}::{_DUCKDB_TYPES[dtype]}"


_DUCKDB_TYPES = {"<i8": "BIGINT", "<i4": "INTEGER", "<f4": "FLOAT", "|u1": "UTINYINT"}


def feed_batches(con, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """The ranked_feeds rows ordered by (user_id, rank), as Arrow batches of user_id, the
    FEED_COLUMNS in their stored types, and social_proof_user_ids."""
    columns = ", ".join(f"{_feed_column_sql(name, dtype)} AS {name}" for name, dtype in FEED_COLUMNS)
    return iter(
        con.sql(
            f"SELECT user_id, {columns}, coalesce(social_proof_user_ids, []) AS social_proof_user_ids "
            f"FROM {FEEDS_TABLE} ORDER BY user_id, rank"
        ).to_arrow_reader(batch_rows)
    )


def encoded_feeds(batches) -> Iterator[tuple[int, bytes]]:
    """(user_id, encoded feed) per user, from batches ordered by user_id; a user whose rows continue
    in the next batch waits for it."""
    pending: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if pending is not None:
            table = pa.concat_tables([pending, table])
        table = table.combine_chunks()
        users = table.column("user_id").to_numpy()
        if len(users) == 0:
            continue
        last_start = int(np.flatnonzero(users != users[-1])[-1]) + 1 if users[0] != users[-1] else 0
        yield from _encode_users(table.slice(0, last_start))
        pending = table.slice(last_start)
    if pending is not None:
        yield from _encode_users(pending.combine_chunks())


def _encode_users(table: pa.Table) -> Iterator[tuple[int, bytes]]:
    """Every user of `table` (complete feeds, ordered by user and rank), as typed column buffers."""
    if table.num_rows == 0:
        return
    table = table.combine_chunks()
    users = table.column("user_id").to_numpy()
    columns = [
        table.column(name).chunk(0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        for name, dtype in FEED_COLUMNS
    ]
    proof = table.column("social_proof_user_ids").chunk(0)
    offsets = proof.offsets.to_numpy()
    proof_ids = proof.values.to_numpy(zero_copy_only=False).astype("<i8", copy=False)
    cuts = [0, *(np.flatnonzero(np.diff(users)) + 1).tolist(), len(users)]
    for start, end in zip(cuts, cuts[1:]):
        first, last = offsets[start], offsets[end]
        yield (
            int(users[start]),
            encode_record(
                [
                    end - start,
                    *(column[start:end].tobytes() for column in columns),
                    (offsets[start : end + 1] - first).astype("<i4").tobytes(),
                    proof_ids[first:last].tobytes(),
                ]
            ),
        )


def _feed_records(con, as_of, config) -> Iterator[tuple[int, bytes]]:
    return encoded_feeds(feed_batches(con))


def _sql_records(sql: Callable[[PublicationConfig], str]) -> Callable[..., Iterator[tuple[int, bytes]]]:
    """Records from a query whose first column is the id and the rest the key space's fields."""

    def records(con, as_of, config, *, batch_rows: int = 65_536) -> Iterator[tuple[int, bytes]]:
        for batch in con.sql(sql(config)).to_arrow_reader(batch_rows):
            columns = [column.to_pylist() for column in batch.columns]
            for id_, *values in zip(*columns):
                yield id_, encode_record(values)

    return records


def register_tweet_views(con, *, as_of: datetime, window_days: int) -> None:
    """`visible_tweets`: posted by `as_of` and not deleted by then; `recent_tweets`: of those, the ones
    of the last `window_days`."""
    now = _timestamp(as_of)
    start = _timestamp(as_of - timedelta(days=window_days))
    con.execute(
        f"CREATE OR REPLACE VIEW visible_tweets AS SELECT * FROM tweets "
        f"WHERE created_at <= {now} AND (deleted_at IS NULL OR deleted_at > {now})"
    )
    con.execute(f"CREATE OR REPLACE VIEW recent_tweets AS SELECT * FROM visible_tweets WHERE created_at > {start}")


def _epoch_ms(column: str) -> str:
    """Milliseconds since the epoch, floored like Spark's unix_millis (DuckDB's epoch_ms rounds)."""
    return f"(epoch_us({column}) // 1000)"


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


def _as_of_filter(column: str):
    """A WHERE clause keeping rows stamped by the build time (filled in per connection)."""
    return f"{column} <= (SELECT as_of FROM publication_as_of)"


_PROFILES_SQL = f"""
SELECT u.user_id, u.handle, u.is_verified, u.allow_nsfw, u.lang,
       coalesce(c.following_count, 0), coalesce(c.follower_count, 0)
FROM users u LEFT JOIN user_follow_counts c USING (user_id)
WHERE {_as_of_filter("u.created_at")}
ORDER BY u.user_id"""

_FOLLOWING_SQL = f"""
SELECT follower_id, list(followee_id ORDER BY followee_id)
FROM follows WHERE {_as_of_filter("created_at")}
GROUP BY follower_id ORDER BY follower_id"""

_BLOCKED_MUTED_SQL = f"""
SELECT user_id,
       coalesce(list(target_user_id ORDER BY target_user_id) FILTER (WHERE action = 'block'), []),
       coalesce(list(target_user_id ORDER BY target_user_id) FILTER (WHERE action = 'mute'), [])
FROM social_actions WHERE {_as_of_filter("created_at")}
GROUP BY user_id ORDER BY user_id"""


def _who_to_follow_sql(config: PublicationConfig) -> str:
    return f"""
SELECT user_id, list(candidate_id ORDER BY rank), list(social_proof_count ORDER BY rank),
       list(proof_user_ids ORDER BY rank)
FROM follow_graph_two_hop WHERE rank <= {config.who_to_follow_length}
GROUP BY user_id ORDER BY user_id"""


def _author_tweets_sql(config: PublicationConfig) -> str:
    n = config.author_timeline_length
    return f"""
SELECT author_id, list_slice(list(tweet_id ORDER BY created_at DESC, tweet_id DESC), 1, {n}),
       list_slice(list({_epoch_ms("created_at")} ORDER BY created_at DESC, tweet_id DESC), 1, {n})
FROM recent_tweets GROUP BY author_id ORDER BY author_id"""


# A feed's tweets and the recent ones, plus what displaying them needs: the tweet a retweet or a
# quote points at, and up to two ancestors of a reply (a conversation module shows at most 3 tweets).
_TWEETS_SQL = f"""
WITH shown AS (SELECT tweet_id FROM recent_tweets UNION SELECT tweet_id FROM ranked_feeds),
     referenced AS (
       SELECT tweet_id FROM shown
       UNION SELECT unnest([t.in_reply_to_tweet_id, t.quoted_tweet_id, t.retweet_of_tweet_id])
       FROM visible_tweets t SEMI JOIN shown USING (tweet_id)),
     wanted AS (
       SELECT tweet_id FROM referenced
       UNION SELECT t.in_reply_to_tweet_id FROM visible_tweets t SEMI JOIN referenced USING (tweet_id))
SELECT t.tweet_id, t.author_id, {_epoch_ms("t.created_at")}, t.in_reply_to_tweet_id, t.quoted_tweet_id,
       t.retweet_of_tweet_id, t.has_media, t.has_video, t.is_nsfw, t.lang, t.text
FROM visible_tweets t SEMI JOIN wanted USING (tweet_id)
ORDER BY t.tweet_id"""

_LISTS_SQL = f"""
SELECT l.list_id, any_value(l.owner_id), any_value(l.name), any_value(l.is_private),
       coalesce(list(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), [])
FROM lists l LEFT JOIN (SELECT * FROM list_members WHERE {_as_of_filter("added_at")}) m USING (list_id)
WHERE {_as_of_filter("l.created_at")}
GROUP BY l.list_id ORDER BY l.list_id"""


def _list_timelines_sql(config: PublicationConfig) -> str:
    return f"""
SELECT list_id, list(tweet_id ORDER BY created_at DESC, tweet_id DESC),
       list(author_id ORDER BY created_at DESC, tweet_id DESC),
       list({_epoch_ms("created_at")} ORDER BY created_at DESC, tweet_id DESC)
FROM (SELECT m.list_id, t.tweet_id, t.author_id, t.created_at,
             row_number() OVER (PARTITION BY m.list_id ORDER BY t.created_at DESC, t.tweet_id DESC) AS position
      FROM list_members m JOIN recent_tweets t ON t.author_id = m.user_id
      WHERE {_as_of_filter("m.added_at")})
WHERE position <= {config.list_timeline_length}
GROUP BY list_id ORDER BY list_id"""


def _popular_sql(config: PublicationConfig) -> str:
    """The most engaged original tweets of the window (likes + retweets + replies of their last 24
    hours): the fallback timeline's backfill."""
    return f"""
SELECT {POPULAR_ID}, coalesce(list(tweet_id ORDER BY score DESC, tweet_id), []),
       coalesce(list(score ORDER BY score DESC, tweet_id), [])
FROM (SELECT f.tweet_id, (f.likes_24h + f.retweets_24h + f.replies_24h)::BIGINT AS score
      FROM tweet_features f SEMI JOIN recent_tweets USING (tweet_id)
      WHERE NOT f.is_reply AND NOT f.is_retweet AND f.likes_24h + f.retweets_24h + f.replies_24h > 0
      ORDER BY score DESC, f.tweet_id LIMIT {config.popular_length})"""


def _ads_inventory_sql(config: PublicationConfig) -> str:
    """The placeholder ads inventory of a world without an ads system: the recent original, safe
    tweets of verified accounts, bid 1 + ln(1 + followers). A deployment with ads replaces this
    query with one over its campaigns table; serving reads only the key space."""
    return f"""
SELECT {POPULAR_ID}, coalesce(list(tweet_id ORDER BY bid DESC, tweet_id), []),
       coalesce(list(author_id ORDER BY bid DESC, tweet_id), []), coalesce(list(bid ORDER BY bid DESC, tweet_id), [])
FROM (SELECT t.tweet_id, t.author_id, round(1 + ln(1 + coalesce(c.follower_count, 0)), 4)::DOUBLE AS bid
      FROM recent_tweets t JOIN users u ON u.user_id = t.author_id
           LEFT JOIN user_follow_counts c ON c.user_id = t.author_id
      WHERE u.is_verified AND NOT t.is_nsfw AND t.in_reply_to_tweet_id IS NULL AND t.retweet_of_tweet_id IS NULL
      ORDER BY bid DESC, t.tweet_id LIMIT {config.ads_inventory_length})"""


FEEDS_DATASET = Dataset(FEEDS, (FEEDS_TABLE,), _feed_records)
DATASETS: tuple[Dataset, ...] = (
    FEEDS_DATASET,
    Dataset(PROFILES, ("users", "user_follow_counts"), _sql_records(lambda c: _PROFILES_SQL)),
    Dataset(FOLLOWING, ("follows",), _sql_records(lambda c: _FOLLOWING_SQL)),
    Dataset(BLOCKED_MUTED, ("social_actions",), _sql_records(lambda c: _BLOCKED_MUTED_SQL)),
    Dataset(WHO_TO_FOLLOW, ("follow_graph_two_hop",), _sql_records(_who_to_follow_sql)),
    Dataset(AUTHOR_TWEETS, ("tweets",), _sql_records(_author_tweets_sql)),
    Dataset(TWEETS, ("tweets", FEEDS_TABLE), _sql_records(lambda c: _TWEETS_SQL)),
    Dataset(LISTS, ("lists", "list_members"), _sql_records(lambda c: _LISTS_SQL)),
    Dataset(LIST_TIMELINES, ("list_members", "tweets"), _sql_records(_list_timelines_sql)),
    Dataset(POPULAR, ("tweet_features", "tweets"), _sql_records(_popular_sql)),
    Dataset(PROMOTED, ("tweets", "users", "user_follow_counts"), _sql_records(_ads_inventory_sql)),
)


def source_connection(
    sources: dict[str, Path], *, versions: dict[str, int], as_of: datetime, config: PublicationConfig
):
    """A DuckDB connection with each source table as a view of its snapshot at `versions` (pinned: a
    commit made while publishing is not seen), the tweet views, and the build time."""
    import duckdb

    from jobs.duckdb_catalog import register_snapshot

    con = duckdb.connect()
    # Spark writes timestamps as INT96, which DuckDB reads as TIMESTAMP without a zone and compares
    # with the TIMESTAMPTZ bounds below in the session's zone: UTC, like the Spark session.
    con.execute("SET TimeZone = 'UTC'")
    for name, path in sources.items():
        register_snapshot(con, name, path, version=versions.get(name))
    con.execute(f"CREATE TABLE publication_as_of AS SELECT {_timestamp(as_of)} AS as_of")
    if "tweets" in sources:
        register_tweet_views(con, as_of=as_of, window_days=config.window_days)
    return con
