"""Mixing: what a For You page holds besides its ranked tweets, as Home Mixer's mixer adds modules
and ads around the scored candidates.

- Conversation modules: a ranked reply is shown below its ancestors (at most `conversation_size`
  tweets in all, root first), those the viewer may see and has not been served yet.
- Who-to-follow: a module of the published suggestions at `who_to_follow_position` (1-based),
  minus accounts the viewer follows, blocked, muted, or is; not shown again within
  `who_to_follow_interval_hours`.
- Promoted tweets: at `promoted_positions` (1-based, on every page) from the ads inventory (key
  space `promoted`, best bid first), never one served before in this session (the cursor's served
  ids), seen, from a hidden author, the viewer's own, already on the page, or deleted.

The positions count entries of the page; promoted tweets and modules do not count toward `count`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import redis_layout as rl
from serving.store import Store, UserState
from serving.timelines import Candidate


@dataclass(frozen=True)
class MixingConfig:
    conversation_size: int = 3
    who_to_follow_position: int = 5
    who_to_follow_size: int = 3
    who_to_follow_interval_hours: float = 12.0
    promoted_positions: tuple[int, ...] = (3, 15)
    promoted_window: int = 20  # inventory entries whose metadata one page reads

    def __post_init__(self) -> None:
        positions = [self.who_to_follow_position, *self.promoted_positions]
        if len(set(positions)) != len(positions) or min(positions) < 1:
            raise ValueError(f"module and promoted positions must be distinct and at least 1: {positions}")
        if self.conversation_size < 1:
            raise ValueError("conversation_size must be at least 1")


@dataclass
class Entry:
    """One entry of a page: `tweet` and `promoted` hold one (candidate, tweet), `conversation` the
    ancestors root first then the ranked reply, `who_to_follow` the suggested users."""

    type: str
    tweets: list[tuple[Candidate, dict]] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)


def visible(tweet: dict | None, state: UserState) -> bool:
    return (tweet is not None and tweet["author_id"] not in state.hidden_authors
            and (not tweet["is_nsfw"] or state.allow_nsfw))


async def with_conversations(store: Store, version: int, page: list[tuple[Candidate, dict]], *, state: UserState,
                             served: set[int], config: MixingConfig) -> list[Entry]:
    """The page's ranked tweets as entries, each reply with up to `conversation_size - 1` ancestors
    (one metadata read per level); ancestors already served, on the page, or not visible are left
    out, and a chain stops at the first one left out."""
    on_page = served | {c.tweet_id for c, _ in page}
    chains: dict[int, list[dict]] = {c.tweet_id: [] for c, _ in page}
    heads = {c.tweet_id: tweet for c, tweet in page}
    for _ in range(config.conversation_size - 1):
        wanted = {tid: head["in_reply_to_tweet_id"] for tid, head in heads.items() if head["in_reply_to_tweet_id"]}
        if not wanted:
            break
        parents = await store.tweets(version, set(wanted.values()), deletions_read=state.deletions_read)
        heads = {}
        for tid, parent_id in wanted.items():
            parent = parents.get(parent_id)
            if parent_id in on_page or not visible(parent, state):
                continue
            on_page.add(parent_id)
            chains[tid].append(parent)
            heads[tid] = parent
    entries = []
    for candidate, tweet in page:
        ancestors = [(Candidate(a["tweet_id"], a["author_id"], a["created_at_ms"], 0.0, a["author_id"] in state.following),
                      a) for a in reversed(chains[candidate.tweet_id])]
        entries.append(Entry("conversation", ancestors + [(candidate, tweet)]) if ancestors
                       else Entry("tweet", [(candidate, tweet)]))
    return entries


def who_to_follow_users(state: UserState, *, now_ms: float, config: MixingConfig) -> list[dict]:
    """The suggestions to show now ([] when shown within the interval or none is left)."""
    if state.who_to_follow is None:
        return []
    if state.who_to_follow_shown_ms is not None and \
            now_ms - state.who_to_follow_shown_ms < config.who_to_follow_interval_hours * 3_600_000:
        return []
    excluded = state.following | state.hidden_authors | {state.user_id}
    suggestions = state.who_to_follow
    users = [{"user_id": u, "social_proof_count": n, "proof_user_ids": list(proof)}
             for u, n, proof in zip(suggestions["user_ids"], suggestions["social_proof_counts"],
                                    suggestions["proof_user_ids"]) if u not in excluded]
    return users[:config.who_to_follow_size]


async def promoted_tweets(store: Store, version: int, *, state: UserState, exclude: set[int], slots: int,
                          config: MixingConfig) -> list[tuple[Candidate, dict]]:
    """Up to `slots` promoted tweets for this page (module docstring), best bid first."""
    if slots <= 0:
        return []
    inventory = (await store.records(rl.PROMOTED, version, [rl.POPULAR_ID])).get(rl.POPULAR_ID)
    if not inventory:
        return []
    hidden = state.hidden_authors | {state.user_id}
    eligible = [(t, a, b) for t, a, b in zip(inventory["tweet_ids"], inventory["advertiser_ids"], inventory["bids"])
                if t not in exclude and t not in state.seen and a not in hidden][:config.promoted_window]
    tweets = await store.tweets(version, (t for t, _, _ in eligible), deletions_read=state.deletions_read)
    chosen = []
    for tweet_id, advertiser, bid in eligible:
        tweet = tweets.get(tweet_id)
        if visible(tweet, state):
            chosen.append((Candidate(tweet_id, advertiser, tweet["created_at_ms"], float(bid),
                                     advertiser in state.following, sources=("promoted",)), tweet))
            if len(chosen) == slots:
                break
    return chosen


def place(entries: list[Entry], extra: dict[int, Entry]) -> list[Entry]:
    """`entries` with each of `extra` at its 1-based position, in position order (a position past
    the end of the list grown so far is dropped)."""
    placed = list(entries)
    for position in sorted(extra):
        if position - 1 <= len(placed):
            placed.insert(position - 1, extra[position])
    return placed
