"""The Redis key layout and value encoding, shared by the publisher and the API (docs/redis_layout.md).

Every published dataset lives under its version number; one pointer hash says which version is
current. Keys a request reads together share a Redis Cluster hash tag (`{u<user_id>}`), so they
sit in one slot. Values are msgpack arrays whose fields are listed here, not repeated per row.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def version_prefix(version: int) -> str:
    return f"{PREFIX}:v{version}"


def manifest_key(version: int) -> str:
    """Hash: state (writing, verified, published, discarded), counts, checksum, what it was built with."""
    return f"{PREFIX}:{{ptr}}:manifest:v{version}"


def feed_key(version: int, user_id: int) -> str:
    return f"{version_prefix(version)}:{{u{user_id}}}:feed"


def version_pattern(version: int) -> str:
    """SCAN pattern of every key of a version."""
    return f"{version_prefix(version)}:*"


def encode_feed(items: Sequence[Sequence]) -> bytes:
    """A user's feed: msgpack [layout version, [item, ...]], each item FEED_ITEM_FIELDS in order."""
    return msgpack.packb([LAYOUT_VERSION, [list(item) for item in items]], use_bin_type=True)


def decode_feed(value: bytes) -> list[dict]:
    layout, items = msgpack.unpackb(value, raw=False)
    if layout != LAYOUT_VERSION:
        raise ValueError(f"feed encoded with layout {layout}, this code reads layout {LAYOUT_VERSION}")
    return [dict(zip(FEED_ITEM_FIELDS, item)) for item in items]
