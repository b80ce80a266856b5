"""What a request reads from Redis: the current published version and, under it, the datasets of
`serving.redis_layout`, plus the request-time state written since the build. Every read is one
pipelined round trip of single-key commands (a Redis Cluster client routes them per slot); the
keys of one user share a hash tag, so a user's reads go to one node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import redis.asyncio as aioredis

from serving import redis_layout as rl

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

    @property
    def allow_nsfw(self) -> bool:
        return bool(self.profile and self.profile.get("allow_nsfw"))

    @property
    def hidden_authors(self) -> set[int]:
        return self.blocked | self.muted


def _ints(values: Iterable) -> set[int]:
    return {int(v) for v in values}


@dataclass
class Store:
    client: aioredis.Redis
    pointer_ttl_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
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
        pointer = await self.pointer()
        if not pointer or "version" not in pointer:
            raise NotPublished("no published version in Redis yet: run `homefeed publish`")
        return int(pointer["version"])

    async def user_state(self, version: int, user_id: int, *, with_feed: bool = True) -> UserState:
        """The user's feed, profile, follow set, blocks and mutes as published, merged with what
        the events since then changed: one pipeline (all keys carry the user's hash tag)."""
        pipe = self.client.pipeline(transaction=False)
        spaces = (rl.FEEDS, rl.PROFILES, rl.FOLLOWING, rl.BLOCKED_MUTED, rl.WHO_TO_FOLLOW)
        for space in spaces:
            pipe.get(space.key(version, user_id))
        for what in ("blocked", "muted", "followed", "unfollowed"):
            pipe.smembers(rl.realtime_user_key(user_id, what))
        pipe.zrevrange(rl.realtime_user_key(user_id, "seen"), 0, SEEN_LIMIT - 1)
        pipe.zrange(rl.realtime_user_key(user_id, "not_interested"), 0, -1, withscores=True)
        pipe.get(rl.realtime_user_key(user_id, "who_to_follow_shown"))
        (feed, profile, following, blocked_muted, wtf, blocked, muted, followed, unfollowed, seen, not_interested,
         wtf_shown) = await pipe.execute()
        feed_columns, feed_error = None, None
        if feed and with_feed:
            try:
                feed_columns = rl.decode_feed_columns(feed)
            except (ValueError, KeyError) as error:  # another layout, a corrupt value: fail open
                feed_error = f"{type(error).__name__}: {error}"
        published_follows = set(rl.FOLLOWING.decode(following)["followee_ids"]) if following else set()
        published_blocks = rl.BLOCKED_MUTED.decode(blocked_muted) if blocked_muted else {}
        return UserState(
            user_id=user_id,
            feed=feed_columns,
            feed_error=feed_error,
            profile=rl.PROFILES.decode(profile) if profile else None,
            following=(published_follows | _ints(followed)) - _ints(unfollowed),
            blocked=set(published_blocks.get("blocked_ids", ())) | _ints(blocked),
            muted=set(published_blocks.get("muted_ids", ())) | _ints(muted),
            seen=_ints(seen),
            not_interested_ms={int(author): score for author, score in not_interested},
            who_to_follow=rl.WHO_TO_FOLLOW.decode(wtf) if wtf else None,
            who_to_follow_shown_ms=float(wtf_shown) if wtf_shown else None,
        )

    async def tweets(self, version: int, tweet_ids: Iterable[int]) -> dict[int, dict]:
        """Metadata of the tweets that exist and are not deleted: published ones, or posted since
        the build; a tweet deleted since the build is left out."""
        ids = list(dict.fromkeys(int(t) for t in tweet_ids))
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for tweet_id in ids:
            pipe.get(rl.TWEETS.key(version, tweet_id))
            pipe.get(rl.realtime_tweet_key(tweet_id))
            pipe.exists(rl.deleted_tweet_key(tweet_id))
        values = await pipe.execute()
        found = {}
        for i, tweet_id in enumerate(ids):
            published, fresh, deleted = values[3 * i:3 * i + 3]
            record = published or fresh
            if record and not deleted:
                found[tweet_id] = {"tweet_id": tweet_id, **rl.TWEETS.decode(record)}
        return found

    async def records(self, space: rl.KeySpace, version: int, ids: Iterable[int]) -> dict[int, dict]:
        """`space`'s records for the ids that have one."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for id_ in ids:
            pipe.get(space.key(version, id_))
        return {id_: space.decode(value) for id_, value in zip(ids, await pipe.execute()) if value}

    async def new_tweets_of(self, author_ids: Iterable[int], *, since_ms: float) -> list[tuple[int, int, float]]:
        """(tweet_id, author_id, created ms) of the tweets the authors posted since `since_ms`
        (request-time state written by the events endpoint): one read of who posted since then,
        then one of each such author's new tweets."""
        authors = set(author_ids)
        if not authors:
            return []
        active = await self.client.zrangebyscore(rl.ACTIVE_AUTHORS, since_ms, "+inf")
        posting = sorted(authors & _ints(active))
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
