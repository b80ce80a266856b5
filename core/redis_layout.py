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
import numpy as np
import redis.exceptions

from core.heads import HEAD_COLUMNS
from core.sources import CANDIDATE_SOURCES

# What a Redis or Redis Cluster client raises when the server fails: a cluster client's own errors
# (no reachable node, a slot no node serves) are not RedisErrors.
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)

LAYOUT_VERSION = 2
PREFIX = "hf"

# The pointer's keys share the hash tag {ptr}: the switch script touches them together, which Redis
# Cluster allows only within one slot.
CURRENT = f"{PREFIX}:{{ptr}}:current"  # hash: version, previous, published_at, users, ... (the pointer)
VERSION_COUNTER = f"{PREFIX}:{{ptr}}:seq"  # INCR: the next version number
HISTORY = f"{PREFIX}:{{ptr}}:history"  # sorted set: version -> when it became current (epoch seconds)
LIVE = f"{PREFIX}:{{ptr}}:live"  # set: versions whose keys have no expiry yet

# A feed is stored by column: one little-endian typed buffer per field, in rank order, so the
# publisher copies Arrow buffers instead of building Python objects per item, and serving reads
# each column with numpy.frombuffer (filters and reranking are array operations).
FEED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tweet_id", "<i8"),
    ("author_id", "<i8"),
    ("created_at_ms", "<i8"),
    ("rank", "<i4"),
    ("final_score", "<f4"),
    ("heavy_score", "<f4"),
    ("is_in_network", "|u1"),
    ("is_reply", "|u1"),
    ("sources", "|u1"),  # bit i set: retrieved by CANDIDATE_SOURCES[i]
    *((column, "<f4") for column in HEAD_COLUMNS),
)
# After the columns: the social proof of every item, as offsets (int32, count + 1) into one id buffer (int64).
FEED_ITEM_FIELDS: tuple[str, ...] = (*(name for name, _ in FEED_COLUMNS), "social_proof_user_ids")


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

    def id_of(self, key: bytes | str) -> int:
        """The id in one of this space's keys."""
        text = key.decode() if isinstance(key, bytes) else key
        tag = text.split("{", 1)[1].split("}", 1)[0]
        if not tag.startswith(self.tag) or not text.endswith(f"}}:{self.suffix}"):
            raise ValueError(f"{text!r} is not a {self.name} key")
        return int(tag[len(self.tag) :])

    def decode(self, value: bytes) -> dict:
        layout, *values = msgpack.unpackb(value, raw=False)
        _check_layout(layout, self.name)
        return dict(zip(self.fields, values))


FEEDS = KeySpace(
    "feed", "u", "feed", ("count", *(name for name, _ in FEED_COLUMNS), "social_proof_offsets", "social_proof_user_ids")
)
PROFILES = KeySpace(
    "profile", "u", "profile", ("handle", "is_verified", "allow_nsfw", "lang", "following_count", "follower_count")
)
FOLLOWING = KeySpace("following", "u", "following", ("followee_ids",))
BLOCKED_MUTED = KeySpace("blocked_muted", "u", "blocked_muted", ("blocked_ids", "muted_ids"))
WHO_TO_FOLLOW = KeySpace("who_to_follow", "u", "who_to_follow", ("user_ids", "social_proof_counts", "proof_user_ids"))
AUTHOR_TWEETS = KeySpace("author_tweets", "u", "tweets", ("tweet_ids", "created_at_ms"))
TWEETS = KeySpace(
    "tweet",
    "t",
    "tweet",
    (
        "author_id",
        "created_at_ms",
        "in_reply_to_tweet_id",
        "quoted_tweet_id",
        "retweet_of_tweet_id",
        "has_media",
        "has_video",
        "is_nsfw",
        "lang",
        "text",
    ),
)
LISTS = KeySpace("list", "l", "list", ("owner_id", "name", "is_private", "member_ids"))
LIST_TIMELINES = KeySpace("list_timeline", "l", "timeline", ("tweet_ids", "author_ids", "created_at_ms"))
POPULAR = KeySpace("popular", "g", "popular", ("tweet_ids", "scores"))  # one key, id 0
# The ads inventory serving fills promoted slots from, best bid first (one key, id 0).
PROMOTED = KeySpace("promoted", "g", "promoted", ("tweet_ids", "advertiser_ids", "bids"))
KEY_SPACES: tuple[KeySpace, ...] = (
    FEEDS,
    PROFILES,
    FOLLOWING,
    BLOCKED_MUTED,
    WHO_TO_FOLLOW,
    AUTHOR_TWEETS,
    TWEETS,
    LISTS,
    LIST_TIMELINES,
    POPULAR,
    PROMOTED,
)
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


def decode_feed_columns(value: bytes) -> dict[str, np.ndarray]:
    """A feed as one numpy array per FEED_COLUMNS field, plus `social_proof_offsets` and
    `social_proof_user_ids` (item i's proof is ids[offsets[i]:offsets[i + 1]])."""
    fields = FEEDS.decode(value)
    columns = {name: np.frombuffer(fields[name], dtype=dtype) for name, dtype in FEED_COLUMNS}
    columns["social_proof_offsets"] = np.frombuffer(fields["social_proof_offsets"], dtype="<i4")
    columns["social_proof_user_ids"] = np.frombuffer(fields["social_proof_user_ids"], dtype="<i8")
    if any(len(columns[name]) != fields["count"] for name, _ in FEED_COLUMNS):
        raise ValueError("a feed's columns differ in length")
    return columns


def decode_feed(value: bytes) -> list[dict]:
    """A feed as one dict per item (FEED_ITEM_FIELDS), in rank order: for tests, tools and the explain
    page; the request path works on `decode_feed_columns`."""
    columns = decode_feed_columns(value)
    offsets, proof = columns["social_proof_offsets"], columns["social_proof_user_ids"]
    items = []
    for i in range(len(columns["tweet_id"])):
        item = {name: columns[name][i].item() for name, _ in FEED_COLUMNS}
        item["is_in_network"], item["is_reply"] = bool(item["is_in_network"]), bool(item["is_reply"])
        item["sources"] = [source for bit, source in enumerate(CANDIDATE_SOURCES) if item["sources"] >> bit & 1]
        item["social_proof_user_ids"] = proof[offsets[i] : offsets[i + 1]].tolist()
        items.append(item)
    return items


def _check_layout(layout, what: str) -> None:
    if layout != LAYOUT_VERSION:
        raise ValueError(f"{what} encoded with layout {layout}, this code reads layout {LAYOUT_VERSION}")


# --- request-time state ------------------------------------------------------------------------
# What happened since the batch build, written by POST /v1/events and read by every request. Not
# versioned: a new publication does not reset it (events older than the build are already in the
# build, and each key expires after REALTIME_TTL_SECONDS). Per-user keys share the user's hash tag.
REALTIME_TTL_SECONDS = 3 * 24 * 3600


def realtime_user_key(user_id: int, what: str) -> str:
    """`hf:{u<id>}:rt:<what>`: `seen` (zset tweet -> ms), `blocked`, `muted`, `followed`,
    `unfollowed` (sets of user ids), `not_interested` (zset author -> ms), `tweets` (zset of the
    user's new tweets -> created ms), `who_to_follow_shown` (ms)."""
    return f"{PREFIX}:{{u{user_id}}}:rt:{what}"


def realtime_tweet_key(tweet_id: int) -> str:
    """`hf:{t<id>}:rt:tweet`: a tweet posted since the build (TWEETS fields), or `deleted`: 1."""
    return f"{PREFIX}:{{t{tweet_id}}}:rt:tweet"


# zset: author -> when they last posted through the events endpoint (ms): a timeline reads the new
# tweets of only those followees who posted since the build, not one key per followee.
ACTIVE_AUTHORS = f"{PREFIX}:{{rt}}:active_authors"


# stream: one entry (`t`: tweet id) per tweet deleted since the build, in the order Redis received
# them. Each API process keeps the deleted ids in memory and reads only the entries past the last
# one it has seen, inside the request's first pipeline, so no request reads a mark per tweet.
DELETION_LOG = f"{PREFIX}:{{rt}}:deleted_log"
DELETION_LOG_MAX_ENTRIES = 1_000_000  # the newest deletions kept (the next build has the older ones)
