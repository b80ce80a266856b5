"""The Redis key layout and value encoding, shared by the publisher and the API (docs/redis_layout.md).

Every published dataset lives under its version number; one pointer hash says which version is
current. Keys a request reads together share a Redis Cluster hash tag (`{u<user_id>}` for
everything of one user, `{l<list_id>}` for a list, `{t<tweet_id>}` for a tweet), so they sit in
one slot. Values are msgpack arrays `[LAYOUT_VERSION, field, ...]` whose fields are declared here,
not repeated per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

LAYOUT_VERSION = 1
PREFIX = "hf"

# The pointer's keys share the hash tag {ptr}: the switch script touches them together, which Redis
# Cluster allows only within one slot.
CURRENT = f"{PREFIX}:{{ptr}}:current"       # hash: version, previous, published_at, users, ... (the pointer)
VERSION_COUNTER = f"{PREFIX}:{{ptr}}:seq"   # INCR: the next version number
HISTORY = f"{PREFIX}:{{ptr}}:history"       # sorted set: version -> when it became current (epoch seconds)
LIVE = f"{PREFIX}:{{ptr}}:live"             # set: versions whose keys have no expiry yet

# The fields of one feed item, in order (msgpack array per item).
FEED_ITEM_FIELDS: tuple[str, ...] = (
    "tweet_id", "author_id", "created_at_ms", "rank", "final_score", "heavy_score", "is_in_network",
    "is_reply", "sources", "social_proof_user_ids", "p_like", "p_retweet", "p_reply", "p_good_click",
    "p_good_profile_click", "p_video_playback50", "p_reply_engaged_by_author", "p_negative_feedback",
    "p_report",
)


@dataclass(frozen=True)
class KeySpace:
    """One kind of published value: `hf:v<N>:{<tag><id>}:<suffix>` holding msgpack
    `[LAYOUT_VERSION, *fields]`."""

    name: str
    tag: str
    suffix: str
    fields: tuple[str, ...]

    def key(self, version: int, id_: int) -> str:
        return f"{version_prefix(version)}:{{{self.tag}{id_}}}:{self.suffix}"

    def decode(self, value: bytes) -> dict:
        layout, *values = msgpack.unpackb(value, raw=False)
        _check_layout(layout, self.name)
        return dict(zip(self.fields, values))


FEEDS = KeySpace("feed", "u", "feed", ("items",))
PROFILES = KeySpace("profile", "u", "profile",
                    ("handle", "is_verified", "allow_nsfw", "lang", "following_count", "follower_count"))
FOLLOWING = KeySpace("following", "u", "following", ("followee_ids",))
BLOCKED_MUTED = KeySpace("blocked_muted", "u", "blocked_muted", ("blocked_ids", "muted_ids"))
WHO_TO_FOLLOW = KeySpace("who_to_follow", "u", "who_to_follow", ("user_ids", "social_proof_counts", "proof_user_ids"))
AUTHOR_TWEETS = KeySpace("author_tweets", "u", "tweets", ("tweet_ids", "created_at_ms"))
TWEETS = KeySpace("tweet", "t", "tweet", (
    "author_id", "created_at_ms", "in_reply_to_tweet_id", "quoted_tweet_id", "retweet_of_tweet_id", "has_media",
    "has_video", "is_nsfw", "lang", "text"))
LISTS = KeySpace("list", "l", "list", ("owner_id", "name", "is_private", "member_ids"))
LIST_TIMELINES = KeySpace("list_timeline", "l", "timeline", ("tweet_ids", "author_ids", "created_at_ms"))
POPULAR = KeySpace("popular", "g", "popular", ("tweet_ids", "scores"))  # one key, id 0
KEY_SPACES: tuple[KeySpace, ...] = (FEEDS, PROFILES, FOLLOWING, BLOCKED_MUTED, WHO_TO_FOLLOW, AUTHOR_TWEETS, TWEETS,
                                    LISTS, LIST_TIMELINES, POPULAR)
POPULAR_ID = 0


def version_prefix(version: int) -> str:
    return f"{PREFIX}:v{version}"


def manifest_key(version: int) -> str:
    """Hash: state (writing, verified, published), counts, checksum, what it was built with."""
    return f"{PREFIX}:{{ptr}}:manifest:v{version}"


def feed_key(version: int, user_id: int) -> str:
    return FEEDS.key(version, user_id)


def version_pattern(version: int) -> str:
    """SCAN pattern of every key of a version."""
    return f"{version_prefix(version)}:*"


def encode_record(values: Sequence) -> bytes:
    """msgpack [LAYOUT_VERSION, *values], `values` in the order of the key space's fields."""
    return msgpack.packb([LAYOUT_VERSION, *values], use_bin_type=True)


def encode_feed(items: Sequence[Sequence]) -> bytes:
    """A user's feed: msgpack [layout version, [item, ...]], each item FEED_ITEM_FIELDS in order."""
    return encode_record([[list(item) for item in items]])


def decode_feed(value: bytes) -> list[dict]:
    return [dict(zip(FEED_ITEM_FIELDS, item)) for item in FEEDS.decode(value)["items"]]


def _check_layout(layout, what: str) -> None:
    if layout != LAYOUT_VERSION:
        raise ValueError(f"{what} encoded with layout {layout}, this code reads layout {LAYOUT_VERSION}")
