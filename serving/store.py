"""What a request reads from Redis: the current published version and, under it, the datasets of
`core.redis_layout`, plus the request-time state written since the build. A user's reads are
one pipeline (their keys share a hash tag, so one node on a cluster), a batch of other keys one
MGET (`get_many`); published values come from `PublishedCache` once read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgpack
import numpy as np
import redis.asyncio as aioredis
import redis.exceptions

from core import redis_layout as rl

SEEN_LIMIT = 5_000  # the most recent impressions kept per user (the seen filter's memory)


class NotPublished(RuntimeError):
    """No version has been published to this Redis yet."""


@dataclass
class UserState:
    """One user's published records and request-time state (empty where nothing is stored)."""

    user_id: int
    feed: dict[str, np.ndarray] | None
    profile: dict | None
    following: set[int]
    blocked: set[int]
    muted: set[int]
    seen: set[int]
    not_interested_ms: dict[int, float]  # author -> latest "not interested", epoch ms
    who_to_follow: dict | None = None
    who_to_follow_shown_ms: float | None = None
    feed_error: str | None = None  # why a stored feed could not be read (the request falls back)
    posted_since: set[int] | None = None  # authors who posted since the build, when read with the state
    deletions_read: bool = False  # the store's deleted tweets were brought up to date with the state
    # A digest of everything read for the request-time state (the feed value included) and of the
    # deletions seen so far: equal digests of one version, equal state (`serving.page_cache`).
    fingerprint: bytes = b""

    @property
    def allow_nsfw(self) -> bool:
        return bool(self.profile and self.profile.get("allow_nsfw"))

    @property
    def hidden_authors(self) -> set[int]:
        return self.blocked | self.muted


def _ints(values: Iterable) -> set[int]:
    return {int(v) for v in values}


_MISSING = object()


class PublishedCache:
    """Decoded values of published keys by (dataset, version, id), the oldest entries out past
    `max_entries` (first in, first out: a hot entry evicted costs one read, while keeping an LRU
    order would cost every hit). Safe to keep: a published version's keys are written once,
    verified, and never changed (a missing key of a published version means none, and is cached
    as such)."""

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max_entries
        self.values: dict[tuple[str, int, int], object] = {}  # read it directly in a loop: .get(key, _MISSING)

    def get(self, key: tuple[str, int, int]):
        return self.values.get(key, _MISSING)

    def put(self, key: tuple[str, int, int], value) -> None:
        self.values[key] = value
        while len(self.values) > self.max_entries:
            del self.values[next(iter(self.values))]


# A read: (command, key, *arguments), e.g. ("ZRANGE", key, 0, -1, "WITHSCORES").
Read = tuple
# Runs each read in turn and returns their replies as one array (nil replies as nil).
READ_ALL_SCRIPT = """
local replies, at = {}, 1
for i = 1, #KEYS do
  local command, count = ARGV[at], tonumber(ARGV[at + 1])
  replies[i] = redis.call(command, KEYS[i], unpack(ARGV, at + 2, at + 1 + count))
  at = at + 2 + count
end
return replies
"""
READ_ALL_SHA = hashlib.sha1(READ_ALL_SCRIPT.encode()).hexdigest()


def _raw(reply):
    """A cluster pipeline's reply, which redis-py has parsed, in the shape the script returns:
    a set as a list, stream entries ([(id, {field: value})]) as [[id, [field, value, ...]]],
    members with scores as [member, score, ...] (the scores stay floats)."""
    if isinstance(reply, set):
        return list(reply)
    if isinstance(reply, list) and reply and isinstance(reply[0], (tuple, list)) and len(reply[0]) == 2:
        if isinstance(reply[0][1], dict):
            return [[entry_id, [part for pair in fields.items() for part in pair]] for entry_id, fields in reply]
        if isinstance(reply[0][1], float):  # sorted set members with scores
            return [part for pair in reply for part in pair]
    return reply


class DeletedTweets:
    """The tweets deleted since the build, as read from `rl.DELETION_LOG`: `after` is the id of the
    last entry read, so that a read asks for the newer entries only (usually none)."""

    def __init__(self, max_entries: int = rl.DELETION_LOG_MAX_ENTRIES):
        self.max_entries = max_entries
        self.after = b"0-0"
        self.ids: dict[int, None] = {}  # in the log's order, so the oldest go first past max_entries

    def __contains__(self, tweet_id: int) -> bool:
        return tweet_id in self.ids

    def read(self) -> Read:
        """The read of the entries past the last one read."""
        return "XRANGE", rl.DELETION_LOG, b"(" + self.after, b"+"

    def apply(self, entries: list) -> None:
        """Take in the raw XRANGE reply: [[id, [field, value, ...]], ...]."""
        for entry_id, fields in entries:
            self.ids[int(dict(zip(fields[::2], fields[1::2]))[b"t"])] = None
            # Concurrent requests may read overlapping entries: the cursor only moves forward.
            if _stream_id(entry_id) > _stream_id(self.after):
                self.after = entry_id
        while len(self.ids) > self.max_entries:
            del self.ids[next(iter(self.ids))]


def _stream_id(entry_id: bytes) -> tuple[int, int]:
    ms, _, sequence = entry_id.partition(b"-")
    return int(ms), int(sequence or 0)


def version_of(pointer: dict | None) -> int:
    """The version a current-version pointer names; NotPublished before any publication."""
    if not pointer or "version" not in pointer:
        raise NotPublished("no published version in Redis yet: run `homefeed publish`")
    return int(pointer["version"])


def built_at_ms(pointer: dict) -> float:
    """When the version a pointer names was built (epoch ms; 0 when it does not say)."""
    value = pointer.get("built_as_of") or pointer.get("as_of") or pointer.get("published_at")
    if not value:
        return 0.0
    return datetime.fromisoformat(value).astimezone(UTC).timestamp() * 1000


@dataclass
class Store:
    client: aioredis.Redis
    pointer_ttl_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    cache: PublishedCache = field(default_factory=PublishedCache)
    deleted: DeletedTweets = field(default_factory=DeletedTweets)
    _pointer: tuple[float, dict | None] = field(default=(float("-inf"), None), repr=False)

    async def pointer(self) -> dict | None:
        """The current-version pointer (cached for `pointer_ttl_seconds`); None before any publication."""
        fetched_at, pointer = self._pointer
        if self.clock() - fetched_at < self.pointer_ttl_seconds:
            return pointer
        raw = await self.client.hgetall(rl.CURRENT)
        pointer = {k.decode(): v.decode() for k, v in raw.items()} if raw else None
        self._pointer = (self.clock(), pointer)
        return pointer

    async def version(self) -> int:
        return version_of(await self.pointer())

    async def user_state(
        self, version: int, user_id: int, *, with_feed: bool = True, posted_since_ms: float | None = None
    ) -> UserState:
        """The user's feed, profile, follow set, blocks and mutes as published, merged with what
        the events since then changed, and the deletions since the last read: one round trip
        (`read_all`), less what the published cache holds. `posted_since_ms`: also read who
        posted since then."""
        reads: list[Read] = []
        published: dict[str, dict | None] = {}
        fetched: list[tuple[rl.KeySpace, str]] = []
        for space in (rl.PROFILES, rl.FOLLOWING, rl.BLOCKED_MUTED, rl.WHO_TO_FOLLOW):
            key = (space.name, version, user_id)
            cached = self.cache.get(key)
            if cached is _MISSING:
                fetched.append((space, key))
                reads.append(("GET", space.key(version, user_id)))
            else:
                published[space.name] = cached
        if with_feed:
            reads.append(("GET", rl.FEEDS.key(version, user_id)))
        reads += [
            ("SMEMBERS", rl.realtime_user_key(user_id, what)) for what in ("blocked", "muted", "followed", "unfollowed")
        ]
        reads += [
            ("ZRANGE", rl.realtime_user_key(user_id, "seen"), 0, SEEN_LIMIT - 1, "REV"),
            ("ZRANGE", rl.realtime_user_key(user_id, "not_interested"), 0, -1, "WITHSCORES"),
            ("GET", rl.realtime_user_key(user_id, "who_to_follow_shown")),
        ]
        if posted_since_ms is not None:
            reads.append(("ZRANGE", rl.ACTIVE_AUTHORS, posted_since_ms, "+inf", "BYSCORE"))
        reads.append(self.deleted.read())
        replies = await self.read_all(reads)
        # The deletion read (the last) is left out: the position it moves the store to stands for it.
        fingerprint = hashlib.blake2b(msgpack.packb(replies[len(fetched) : -1]), digest_size=16)
        for (space, key), value in zip(fetched, replies):
            published[space.name] = space.decode(value) if value else None
            self.cache.put(key, published[space.name])
        rest = iter(replies[len(fetched) :])
        feed = next(rest) if with_feed else None
        blocked, muted, followed, unfollowed, seen, not_interested, wtf_shown = (next(rest) for _ in range(7))
        active = _ints(next(rest)) if posted_since_ms is not None else None
        self.deleted.apply(next(rest))
        fingerprint.update(self.deleted.after)
        feed_columns, feed_error = None, None
        if feed:
            try:
                feed_columns = rl.decode_feed_columns(feed)
            except (ValueError, KeyError) as error:  # another layout, a corrupt value: fail open
                feed_error = f"{type(error).__name__}: {error}"
        follows = published[rl.FOLLOWING.name]
        published_follows = set(follows["followee_ids"]) if follows else set()
        published_blocks = published[rl.BLOCKED_MUTED.name] or {}
        return UserState(
            user_id=user_id,
            feed=feed_columns,
            feed_error=feed_error,
            profile=published[rl.PROFILES.name],
            following=(published_follows | _ints(followed)) - _ints(unfollowed),
            blocked=set(published_blocks.get("blocked_ids", ())) | _ints(blocked),
            muted=set(published_blocks.get("muted_ids", ())) | _ints(muted),
            seen=_ints(seen),
            not_interested_ms={int(author): float(ms) for author, ms in zip(not_interested[::2], not_interested[1::2])},
            who_to_follow=published[rl.WHO_TO_FOLLOW.name],
            who_to_follow_shown_ms=float(wtf_shown) if wtf_shown else None,
            posted_since=active,
            deletions_read=True,
            fingerprint=fingerprint.digest(),
        )

    async def read_all(self, reads: list[Read]) -> list:
        """The raw reply of each read (a command on one key) in one round trip: on one server a
        single EVALSHA of `READ_ALL_SCRIPT` (cheaper for the client than a pipeline of as many
        commands); on a Redis Cluster, whose scripts take the keys of one slot only, a pipeline."""
        if hasattr(self.client, "mget_nonatomic"):  # a cluster client
            return await self.read_pipelined(reads)
        return await self.read_scripted(reads)

    async def read_scripted(self, reads: list[Read]) -> list:
        keys = [key for _, key, *_ in reads]
        argv = [part for command, _, *args in reads for part in (command, len(args), *args)]
        try:
            return await self.client.evalsha(READ_ALL_SHA, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:  # a restarted or flushed Redis: load it once more
            await self.client.script_load(READ_ALL_SCRIPT)
            return await self.client.evalsha(READ_ALL_SHA, len(keys), *keys, *argv)

    async def read_pipelined(self, reads: list[Read]) -> list:
        pipe = self.client.pipeline(transaction=False)
        for command, key, *args in reads:
            pipe.execute_command(command, key, *args)
        return [_raw(reply) for reply in await pipe.execute()]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """GET of each key in one command: MGET on one server; on a Redis Cluster, whose MGET takes
        keys of one slot only, the client's per-slot variant."""
        if not keys:
            return []
        if hasattr(self.client, "mget_nonatomic"):
            return await self.client.mget_nonatomic(keys)
        return await self.client.mget(keys)

    async def read_deletions(self) -> None:
        """Bring the deleted tweets up to date (`user_state` does it in its own round trip)."""
        self.deleted.apply((await self.read_all([self.deleted.read()]))[0])

    async def tweets(self, version: int, tweet_ids: Iterable[int], *, deletions_read: bool = False) -> dict[int, dict]:
        """Metadata of the tweets that exist and are not deleted: published ones (from the cache
        when there), or posted since the build; a tweet deleted since the build is left out.
        `deletions_read`: the request has brought the deleted tweets up to date already (its
        `user_state` did), so that a page whose metadata is all cached reads nothing. Otherwise one
        read of the deletion log, then one MGET of the published values not cached and of the
        values posted since the build of those not published."""
        if not deletions_read:
            await self.read_deletions()
        deleted = self.deleted.ids
        ids = [t for t in dict.fromkeys(int(t) for t in tweet_ids) if t not in deleted]
        tweets, cached = rl.TWEETS.name, self.cache.values
        published = {t: cached.get((tweets, version, t), _MISSING) for t in ids}
        uncached = [t for t in ids if published[t] is _MISSING]
        unpublished = [t for t in ids if published[t] is None or published[t] is _MISSING]  # maybe posted since
        values = iter(
            await self.get_many(
                [rl.TWEETS.key(version, t) for t in uncached] + [rl.realtime_tweet_key(t) for t in unpublished]
            )
            if unpublished
            else ()
        )
        for tweet_id in uncached:
            value = next(values)
            published[tweet_id] = {"tweet_id": tweet_id, **rl.TWEETS.decode(value)} if value else None
            self.cache.put((tweets, version, tweet_id), published[tweet_id])
        fresh = {t: next(values) for t in unpublished}
        found = {}
        for tweet_id in ids:
            if published[tweet_id] is not None:
                found[tweet_id] = published[tweet_id]
            elif fresh[tweet_id]:
                found[tweet_id] = {"tweet_id": tweet_id, **rl.TWEETS.decode(fresh[tweet_id])}
        return found

    async def records(self, space: rl.KeySpace, version: int, ids: Iterable[int]) -> dict[int, dict]:
        """`space`'s records for the ids that have one (through the published cache)."""
        found: dict[int, dict] = {}
        missing: list[int] = []
        for id_ in dict.fromkeys(int(i) for i in ids):
            value = self.cache.get((space.name, version, id_))
            if value is _MISSING:
                missing.append(id_)
            elif value is not None:
                found[id_] = value
        for id_, value in zip(missing, await self.get_many([space.key(version, id_) for id_ in missing])):
            record = space.decode(value) if value else None
            self.cache.put((space.name, version, id_), record)
            if record is not None:
                found[id_] = record
        return found

    async def new_tweets_of(
        self, author_ids: Iterable[int], *, since_ms: float, posted_since: set[int] | None = None
    ) -> list[tuple[int, int, float]]:
        """(tweet_id, author_id, created ms) of the tweets the authors posted since `since_ms`
        (request-time state written by the events endpoint): one read of who posted since then,
        then one of each such author's new tweets."""
        authors = set(author_ids)
        if not authors:
            return []
        if posted_since is None:
            posted_since = _ints(await self.client.zrangebyscore(rl.ACTIVE_AUTHORS, since_ms, "+inf"))
        posting = sorted(authors & posted_since)
        if not posting:
            return []
        pipe = self.client.pipeline(transaction=False)
        for author in posting:
            pipe.zrangebyscore(rl.realtime_user_key(author, "tweets"), since_ms, "+inf", withscores=True)
        found = []
        for author, tweets in zip(posting, await pipe.execute()):
            found.extend((int(tweet), author, score) for tweet, score in tweets)
        return found

    async def mark_who_to_follow_shown(self, user_id: int, now_ms: float, *, ttl_seconds: int) -> None:
        await self.client.set(rl.realtime_user_key(user_id, "who_to_follow_shown"), int(now_ms), ex=ttl_seconds)
