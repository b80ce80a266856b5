"""Client events (`POST /v1/events`): validated, appended to the durable event log, and applied to the
request-time state every later request reads.

The log is a Redis stream (`EVENT_LOG`, never trimmed except by the drain). `drain_event_log`
(`homefeed drain-events`) turns it into Parquet files of the raw-input data contract, so the next
batch build ingests what clients did: impressions and engagements into `engagements`, blocks and
mutes into `social_actions`, follows into `follows`, new tweets into `tweets` (with `deleted_at` when
the same drain also holds their deletion). Every event, including the unfollows and deletions of
older tweets that contract 1.0 cannot express, is also archived whole under `_client_events/`.
A file is written under a hidden name and renamed (on object storage, uploaded whole), and the
stream entries are deleted only after their files exist, so a drain killed at any point loses nothing
and a rerun writes the same files. The raw input may be a local folder or an `s3a://` prefix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core import redis_layout as rl
from core.contract import EARLIEST_VALID_TIME, ENGAGEMENTS, FOLLOWS, SOCIAL_ACTIONS_TABLE, TWEETS, arrow_schema
from core.storage import is_object_store
from serving.store import SEEN_LIMIT, Store

EVENT_LOG = f"{rl.PREFIX}:{{events}}:log"
MAX_EVENTS_PER_REQUEST = 100
MAX_TEXT_LENGTH = 1_000
FUTURE_SLACK_SECONDS = 300  # client clocks run a little ahead

ENGAGEMENT_EVENTS = ("impression", "like", "retweet", "reply", "not_interested")
USER_EVENTS = ("block", "mute", "follow", "unfollow")
ARCHIVE_DIR = "_client_events"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    created_at: datetime | None = Field(
        None, description="When it happened (ISO-8601, UTC when no zone); default: when the server receives it."
    )

    @field_validator("created_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if value < EARLIEST_VALID_TIME:
            raise ValueError("created_at is before 2006-03-21")
        if value.timestamp() > time.time() + FUTURE_SLACK_SECONDS:
            raise ValueError("created_at is in the future")
        return value


class EngagementEvent(_Event):
    """The viewer saw (impression) or engaged with a tweet."""

    type: Literal["impression", "like", "retweet", "reply", "not_interested"]
    tweet_id: int = Field(ge=1)
    dwell_ms: int | None = Field(None, ge=0, le=86_400_000)


class UserEvent(_Event):
    """The viewer blocked, muted, followed or unfollowed an account."""

    type: Literal["block", "mute", "follow", "unfollow"]
    target_user_id: int = Field(ge=1)


class NewTweetEvent(_Event):
    """The viewer posted a tweet (its id assigned by the tweet service)."""

    type: Literal["tweet"]
    tweet_id: int = Field(ge=1)
    text: str | None = Field(None, max_length=MAX_TEXT_LENGTH)
    in_reply_to_tweet_id: int | None = Field(None, ge=1)
    quoted_tweet_id: int | None = Field(None, ge=1)
    retweet_of_tweet_id: int | None = Field(None, ge=1)
    has_media: bool = False
    has_video: bool = False
    is_nsfw: bool = False
    lang: str | None = Field(None, max_length=8)


class DeleteTweetEvent(_Event):
    """The viewer deleted one of their tweets."""

    type: Literal["delete_tweet"]
    tweet_id: int = Field(ge=1)


Event = Annotated[EngagementEvent | UserEvent | NewTweetEvent | DeleteTweetEvent, Field(discriminator="type")]


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class EventError(ValueError):
    """An event that is well-formed but cannot be applied: `status` is the HTTP status it gets."""

    def __init__(self, index: int, status: int, message: str):
        super().__init__(f"events[{index}]: {message}")
        self.index, self.status = index, status


def referenced_tweet_ids(events: Iterable[_Event]) -> set[int]:
    """The tweets whose metadata validating `events` needs."""
    ids: set[int] = set()
    for event in events:
        if isinstance(event, (EngagementEvent, DeleteTweetEvent, NewTweetEvent)):
            ids.add(event.tweet_id)
        if isinstance(event, NewTweetEvent):
            ids.update(t for t in (event.in_reply_to_tweet_id, event.quoted_tweet_id, event.retweet_of_tweet_id) if t)
    return ids


def log_records(viewer_id: int, events: list[_Event], tweets: dict[int, dict], *, now_ms: int) -> list[dict]:
    """The log record of each event (flat, msgpack-able: type, user_id, created_at_ms and the
    event's own fields, plus the tweet's author where the event names a tweet), in order; raises
    EventError for the first one that cannot be applied. `tweets`: metadata of the tweets that
    exist now (published or posted since the build, not deleted)."""
    records = []
    posted_here: dict[int, int] = {}
    for index, event in enumerate(events):
        created_ms = int(event.created_at.timestamp() * 1000) if event.created_at else now_ms
        record = {
            **event.model_dump(exclude={"created_at"}, exclude_none=True),
            "user_id": viewer_id,
            "created_at_ms": created_ms,
        }
        if isinstance(event, UserEvent):
            if event.target_user_id == viewer_id:
                raise EventError(index, 422, f"a user cannot {event.type} themselves")
        elif isinstance(event, NewTweetEvent):
            if event.tweet_id in tweets or event.tweet_id in posted_here:
                raise EventError(index, 409, f"tweet {event.tweet_id} already exists")
            for name in ("in_reply_to_tweet_id", "quoted_tweet_id", "retweet_of_tweet_id"):
                target = getattr(event, name)
                if target and target not in tweets and target not in posted_here:
                    raise EventError(index, 422, f"{name} {target} is not a tweet")
            posted_here[event.tweet_id] = viewer_id
            record["author_id"] = viewer_id
        else:
            author = (
                tweets[event.tweet_id]["author_id"] if event.tweet_id in tweets else posted_here.get(event.tweet_id)
            )
            if author is None:
                raise EventError(index, 404, f"tweet {event.tweet_id} does not exist (or was deleted)")
            if isinstance(event, DeleteTweetEvent):
                if author != viewer_id:
                    raise EventError(index, 403, "only a tweet's author can delete it")
                posted_here.pop(event.tweet_id, None)
            record["author_id"] = author
        records.append(record)
    return records


def queue_event(pipe, record: dict, *, ttl_seconds: int = rl.REALTIME_TTL_SECONDS, seen_limit: int) -> None:
    """The Redis commands that apply one log record to the request-time state (keys of
    `core.redis_layout`), added to `pipe`."""
    kind, user, ms = record["type"], record["user_id"], record["created_at_ms"]

    def user_key(what: str) -> str:
        return rl.realtime_user_key(user, what)

    def touch(key: str) -> None:
        pipe.expire(key, ttl_seconds)

    if kind in ENGAGEMENT_EVENTS:
        # Anything done with a tweet means it was seen: the seen filter keeps the newest `seen_limit`.
        pipe.zadd(user_key("seen"), {record["tweet_id"]: ms})
        pipe.zremrangebyrank(user_key("seen"), 0, -seen_limit - 1)
        touch(user_key("seen"))
        if kind == "not_interested":
            pipe.zadd(user_key("not_interested"), {record["author_id"]: ms})
            touch(user_key("not_interested"))
    elif kind in ("block", "mute"):
        key = user_key("blocked" if kind == "block" else "muted")
        pipe.sadd(key, record["target_user_id"])
        touch(key)
    elif kind in ("follow", "unfollow"):
        added, removed = ("followed", "unfollowed") if kind == "follow" else ("unfollowed", "followed")
        pipe.sadd(user_key(added), record["target_user_id"])
        pipe.srem(user_key(removed), record["target_user_id"])
        touch(user_key(added))
    elif kind == "tweet":
        tweet = dict.fromkeys(rl.TWEETS.fields) | {"has_media": False, "has_video": False, "is_nsfw": False} | record
        pipe.set(
            rl.realtime_tweet_key(record["tweet_id"]),
            rl.encode_record([tweet[name] for name in rl.TWEETS.fields]),
            ex=ttl_seconds,
        )
        pipe.zadd(user_key("tweets"), {record["tweet_id"]: ms})
        touch(user_key("tweets"))
        pipe.zadd(rl.ACTIVE_AUTHORS, {user: ms})
        pipe.expire(rl.ACTIVE_AUTHORS, ttl_seconds)
    elif kind == "delete_tweet":
        pipe.xadd(rl.DELETION_LOG, {"t": record["tweet_id"]}, maxlen=rl.DELETION_LOG_MAX_ENTRIES, approximate=True)
        pipe.expire(rl.DELETION_LOG, ttl_seconds)
        pipe.zrem(user_key("tweets"), record["tweet_id"])
    else:  # the models admit no other type
        raise ValueError(f"unknown event type {kind!r}")


def queue_log_append(pipe, record: dict) -> None:
    pipe.xadd(EVENT_LOG, {"e": msgpack.packb(record, use_bin_type=True)})


async def apply_events(
    store: Store, viewer_id: int, events: list[_Event], *, now_ms: int
) -> tuple[list[dict], list[str]]:
    """The viewer's `events`, checked against the tweets that exist now (`log_records`: EventError
    for the first that cannot be applied, and nothing is written), appended to the event log and
    applied to the request-time state in one pipeline: (their log records, their log entry ids)."""
    version = await store.version()
    tweets = await store.tweets(version, referenced_tweet_ids(events))
    records = log_records(viewer_id, events, tweets, now_ms=now_ms)
    pipe = store.client.pipeline(transaction=False)
    for record in records:  # the log first: a failure after it loses nothing (the drain dedupes by key)
        queue_log_append(pipe, record)
    for record in records:
        queue_event(pipe, record, seen_limit=SEEN_LIMIT)
    results = await pipe.execute()
    return records, [r.decode() for r in results[: len(records)]]


# --- draining the log into raw input ----------------------------------------------------------


@dataclass
class DrainResult:
    events: int = 0
    files: list[str] = field(default_factory=list)
    rows_per_table: dict[str, int] = field(default_factory=dict)


def contract_rows(records: list[dict]) -> dict[str, list[dict]]:
    """Rows of the raw-input contract tables for a run of log records (module docstring)."""
    rows: dict[str, list[dict]] = {
        ENGAGEMENTS.name: [],
        SOCIAL_ACTIONS_TABLE.name: [],
        FOLLOWS.name: [],
        TWEETS.name: [],
    }
    deleted_ms = {r["tweet_id"]: r["created_at_ms"] for r in records if r["type"] == "delete_tweet"}
    for r in records:
        at = _datetime(r["created_at_ms"])
        if r["type"] in ENGAGEMENT_EVENTS:
            rows[ENGAGEMENTS.name].append(
                {
                    "user_id": r["user_id"],
                    "tweet_id": r["tweet_id"],
                    "action": r["type"],
                    "created_at": at,
                    "dwell_ms": r.get("dwell_ms"),
                }
            )
        elif r["type"] in ("block", "mute"):
            rows[SOCIAL_ACTIONS_TABLE.name].append(
                {"user_id": r["user_id"], "target_user_id": r["target_user_id"], "action": r["type"], "created_at": at}
            )
        elif r["type"] == "follow":
            rows[FOLLOWS.name].append(
                {"follower_id": r["user_id"], "followee_id": r["target_user_id"], "created_at": at}
            )
        elif r["type"] == "tweet":
            deleted = deleted_ms.get(r["tweet_id"])
            rows[TWEETS.name].append(
                {
                    "tweet_id": r["tweet_id"],
                    "author_id": r["user_id"],
                    "created_at": at,
                    "text": r.get("text"),
                    **{
                        name: r.get(name)
                        for name in ("in_reply_to_tweet_id", "quoted_tweet_id", "retweet_of_tweet_id", "lang")
                    },
                    **{name: bool(r.get(name, False)) for name in ("has_media", "has_video", "is_nsfw")},
                    "deleted_at": _datetime(deleted) if deleted is not None else None,
                }
            )
    return {name: table_rows for name, table_rows in rows.items() if table_rows}


def drain_event_log(client, raw_dir: Path, *, batch_events: int = 50_000) -> DrainResult:
    """Move the event log into `raw_dir` (module docstring), `batch_events` stream entries a file."""
    result = DrainResult()
    while True:
        entries = client.xrange(EVENT_LOG, "-", "+", count=batch_events)
        if not entries:
            return result
        ids = [entry_id for entry_id, _ in entries]
        records = [msgpack.unpackb(fields[b"e"], raw=False) for _, fields in entries]
        name = f"events-{ids[0].decode().replace('-', '_')}-{ids[-1].decode().replace('-', '_')}.parquet"
        for table, table_rows in contract_rows(records).items():
            schema = arrow_schema({t.name: t for t in (ENGAGEMENTS, SOCIAL_ACTIONS_TABLE, FOLLOWS, TWEETS)}[table])
            result.files.append(str(_write_parquet(raw_dir / table / name, table_rows, schema)))
            result.rows_per_table[table] = result.rows_per_table.get(table, 0) + len(table_rows)
        result.files.append(str(_write_parquet(raw_dir / ARCHIVE_DIR / name, _archive_rows(records), None)))
        client.xdel(EVENT_LOG, *ids)
        result.events += len(records)


def _archive_rows(records: list[dict]) -> list[dict]:
    return [
        {
            "type": r["type"],
            "user_id": r["user_id"],
            "created_at": _datetime(r["created_at_ms"]),
            "event": msgpack.packb(r, use_bin_type=True),
        }
        for r in records
    ]


def _write_parquet(path: Path, rows: list[dict], schema) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_object_store(path):
        # An object becomes visible whole when its upload completes: no hidden name to rename.
        with path.open("wb") as sink:
            pq.write_table(table, sink)
        return path
    hidden = path.with_name(f".{path.name}.tmp")
    with open(hidden, "wb") as sink:
        pq.write_table(table, sink)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(hidden, path)
    return path


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
