"""A page's entries as the JSON objects of `serving.schemas.TimelineEntry`: plain dicts (building a
pydantic model per tweet cost more than the rest of the page; the schema tests check the shape),
each tweet's viewer-independent fields made once per version (`tweet_fields`, kept in a
`PublishedCache`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from core import redis_layout as rl
from serving.candidates import ENGAGEMENT_SOURCE, FOLLOW_RECOMMENDATION_SOURCE, Candidate
from serving.mixing import Entry
from serving.store import _MISSING, PublishedCache, Store


def tweet_fields(candidate: Candidate, tweet: dict, author: dict) -> dict:
    """The fields of a `TweetItem` that do not depend on the viewer or the request."""
    return {
        "tweet_id": str(candidate.tweet_id),
        "author": {
            "user_id": str(candidate.author_id),
            "handle": author.get("handle"),
            "is_verified": bool(author.get("is_verified")),
        },
        "text": tweet["text"],
        "created_at": _iso(tweet["created_at_ms"]),
        "in_reply_to_tweet_id": _id(tweet["in_reply_to_tweet_id"]),
        "quoted_tweet_id": _id(tweet["quoted_tweet_id"]),
        "retweet_of_tweet_id": _id(tweet["retweet_of_tweet_id"]),
        "has_media": bool(tweet["has_media"]),
    }


def tweet_item(
    candidate: Candidate, fields: dict, kind: str, profiles: dict[int, dict], proof_user: int | None, scored: bool
) -> dict:
    """A `TweetItem`: the tweet's `fields` with its score (ranked and promoted only), sources and
    social context ("followed by" a suggestion to follow, "liked by" an engagement)."""
    context = None
    if proof_user in profiles:
        followed = FOLLOW_RECOMMENDATION_SOURCE in candidate.sources and ENGAGEMENT_SOURCE not in candidate.sources
        context = f"{'followed' if followed else 'liked'} by @{profiles[proof_user]['handle']}"
    return {
        "type": kind,
        **fields,
        "in_network": candidate.is_in_network,
        "score": float(candidate.score) if scored or kind == "promoted" else None,
        "sources": candidate.sources,
        "social_context": context,
    }  # a tuple: orjson writes a list


def render_entry(entry: Entry, profiles: dict[int, dict], *, item: Callable[[Candidate, dict, str], dict]) -> dict:
    """One `TimelineEntry` (a tweet, a conversation module or a who-to-follow module);
    `item(candidate, tweet, kind)`: a tweet's `TweetItem`."""
    if entry.type == "conversation":
        return {"type": "conversation", "tweets": [item(c, t, "tweet") for c, t in entry.tweets]}
    if entry.type == "who_to_follow":
        return {
            "type": "who_to_follow",
            "users": [
                {
                    "user_id": str(u["user_id"]),
                    "handle": profiles.get(u["user_id"], {}).get("handle"),
                    "is_verified": bool(profiles.get(u["user_id"], {}).get("is_verified")),
                    "social_proof_count": int(u["social_proof_count"]),
                    "followed_by": [profiles[p]["handle"] for p in u["proof_user_ids"][:2] if p in profiles],
                }
                for u in entry.users
            ],
        }
    return item(*entry.tweets[0], entry.type)


async def render(
    store: Store, rendered: PublishedCache, version: int, entries: list[Entry], *, scored: bool
) -> list[dict]:
    """The entries as `TimelineEntry` objects, with one read of the profiles they name; `rendered`
    keeps each tweet's fields by version."""
    tweets = [item for entry in entries for item in entry.tweets]
    proof = {c.tweet_id: c.social_proof_user_ids[0] for c, _ in tweets if c.social_proof_user_ids}
    suggested = [u for entry in entries for u in entry.users]
    wanted = (
        [c.author_id for c, _ in tweets]
        + list(proof.values())
        + [u["user_id"] for u in suggested]
        + [p for u in suggested for p in u["proof_user_ids"][:2]]
    )
    profiles = await store.records(rl.PROFILES, version, wanted)
    fields_by_key = rendered.values

    def item(candidate: Candidate, tweet: dict, kind: str) -> dict:
        key = ("tweet_fields", version, candidate.tweet_id)
        fields = fields_by_key.get(key, _MISSING)
        if fields is _MISSING:
            fields = tweet_fields(candidate, tweet, profiles.get(candidate.author_id, {}))
            rendered.put(key, fields)
        return tweet_item(candidate, fields, kind, profiles, proof.get(candidate.tweet_id), scored)

    return [render_entry(entry, profiles, item=item) for entry in entries]


@lru_cache(maxsize=1 << 16)  # a page's tweets recur across requests; the conversion is most of an item's cost
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _id(value) -> str | None:
    return None if value is None else str(value)
