"""Mixing: what a For You page holds besides its ranked tweets, as Home Mixer's mixer adds modules
and ads around the scored candidates. Each is a selector of its own, named by the identifier
`ForYouConfig.sources` declares it by:

- `ConversationModules`: a ranked reply is shown below its ancestors (at most `conversation_size`
  tweets in all, root first), those `VISIBLE` to the viewer and not on the page or an earlier one
  of the session; a chain stops at the first ancestor left out.
- `WhoToFollowModule`: a module of the published suggestions at `who_to_follow_position`
  (1-based), minus accounts the viewer follows, blocked, muted, or is; not shown again within
  `who_to_follow_interval_hours`.
- `PromotedSlots`: promoted tweets at `promoted_positions` (1-based, on every page) from the ads
  inventory (key space `promoted`, best bid first), never the viewer's own (the advertiser), of a
  hidden advertiser, seen, on the page or an earlier one of the session, or not `VISIBLE`.

The positions count entries of the page; promoted tweets and modules do not count toward `count`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from core import redis_layout as rl
from serving.candidates import Candidate, TweetColumns
from serving.components import Filter, FilterQuery, run_filters
from serving.filters import VISIBLE, BlockedMutedFilter, DuplicateFilter, PreviouslySeenFilter, SelfTweetFilter
from serving.selectors import PageItem
from serving.store import Store, UserState


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
    tweets: list[PageItem] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)


class ConversationModules:
    """Each ranked reply below its ancestors: those `VISIBLE` and not `DuplicateFilter`'s (on the
    page or an earlier one, or the parent of an earlier reply of the page)."""

    identifier: ClassVar[str] = "conversations"
    visible: ClassVar[tuple[Filter, ...]] = VISIBLE
    once: ClassVar[Filter] = DuplicateFilter()

    async def select(
        self,
        store: Store,
        version: int,
        page: list[PageItem],
        *,
        state: UserState,
        served: frozenset[int],
        config: MixingConfig,
    ) -> list[Entry]:
        """The page's ranked tweets as entries, each reply with up to `conversation_size - 1`
        ancestors (one metadata read per level)."""
        on_page = set(served) | {c.tweet_id for c, _ in page}
        chains: dict[int, list[dict]] = {c.tweet_id: [] for c, _ in page}
        heads = {c.tweet_id: tweet for c, tweet in page}
        query = FilterQuery(state=state, shown=on_page)  # on_page grows with each level
        for _ in range(config.conversation_size - 1):
            wanted = [
                (tid, head["in_reply_to_tweet_id"]) for tid, head in heads.items() if head["in_reply_to_tweet_id"]
            ]
            if not wanted:
                break
            parent_ids = [parent for _, parent in wanted]
            parents = await store.tweets(version, parent_ids, deletions_read=state.deletions_read)
            columns = TweetColumns(parent_ids, parents)
            visible = run_filters(self.visible, query, columns).kept
            # By id alone (an ancestor's retweets are not resolved), the first reply's module first.
            again = self.once.apply(query, {"tweet_id": columns["tweet_id"]}, visible)
            heads = {}
            for (tid, parent_id), shown in zip(wanted, (visible ^ again.removed).tolist()):
                if shown:
                    on_page.add(parent_id)
                    chains[tid].append(parents[parent_id])
                    heads[tid] = parents[parent_id]
        entries = []
        for candidate, tweet in page:
            ancestors = [
                (
                    Candidate(
                        a["tweet_id"], a["author_id"], a["created_at_ms"], 0.0, a["author_id"] in state.following
                    ),
                    a,
                )
                for a in reversed(chains[candidate.tweet_id])
            ]
            entries.append(
                Entry("conversation", ancestors + [(candidate, tweet)])
                if ancestors
                else Entry("tweet", [(candidate, tweet)])
            )
        return entries


class WhoToFollowModule:
    """The published suggestions the viewer may still follow, shown at most once an interval."""

    identifier: ClassVar[str] = "who_to_follow"

    def users(self, state: UserState, *, now_ms: float, config: MixingConfig) -> list[dict]:
        """The suggestions to show now ([] when shown within the interval or none is left)."""
        if state.who_to_follow is None:
            return []
        if (
            state.who_to_follow_shown_ms is not None
            and now_ms - state.who_to_follow_shown_ms < config.who_to_follow_interval_hours * 3_600_000
        ):
            return []
        excluded = state.following | state.hidden_authors | {state.user_id}
        suggestions = state.who_to_follow
        users = [
            {"user_id": u, "social_proof_count": n, "proof_user_ids": list(proof)}
            for u, n, proof in zip(
                suggestions["user_ids"], suggestions["social_proof_counts"], suggestions["proof_user_ids"]
            )
            if u not in excluded
        ]
        return users[: config.who_to_follow_size]

    async def mark_shown(self, store: Store, state: UserState, *, now_ms: float, config: MixingConfig) -> None:
        await store.mark_who_to_follow_shown(
            state.user_id, now_ms, ttl_seconds=int(config.who_to_follow_interval_hours * 3600)
        )


class PromotedSlots:
    """The best bids of the ads inventory the viewer may see, one per promoted position."""

    identifier: ClassVar[str] = "promoted"
    # On the inventory's columns (the advertiser as the author), then on the tweets' metadata.
    eligible: ClassVar[tuple[Filter, ...]] = (
        SelfTweetFilter(),
        BlockedMutedFilter(),
        PreviouslySeenFilter(),
        DuplicateFilter(),
    )
    visible: ClassVar[tuple[Filter, ...]] = VISIBLE

    async def select(
        self, store: Store, version: int, *, state: UserState, exclude: set[int], slots: int, config: MixingConfig
    ) -> list[PageItem]:
        """Up to `slots` promoted tweets for this page (not `exclude`d), best bid first."""
        if slots <= 0:
            return []
        inventory = (await store.records(rl.PROMOTED, version, [rl.POPULAR_ID])).get(rl.POPULAR_ID)
        if not inventory:
            return []
        query = FilterQuery(state=state, shown=exclude)
        rows = self._eligible(query, inventory, config.promoted_window)
        tweet_ids = [inventory["tweet_ids"][row] for row in rows]
        tweets = await store.tweets(version, tweet_ids, deletions_read=state.deletions_read)
        visible = run_filters(self.visible, query, TweetColumns(tweet_ids, tweets)).kept.tolist()
        chosen = []
        for row, tweet_id, shown in zip(rows, tweet_ids, visible):
            if shown:
                advertiser = inventory["advertiser_ids"][row]
                chosen.append(
                    (
                        Candidate(
                            tweet_id,
                            advertiser,
                            tweets[tweet_id]["created_at_ms"],
                            float(inventory["bids"][row]),
                            advertiser in state.following,
                            sources=("promoted",),
                        ),
                        tweets[tweet_id],
                    )
                )
                if len(chosen) == slots:
                    break
        return chosen

    def _eligible(self, query: FilterQuery, inventory: dict, window: int) -> list[int]:
        """The first `window` rows of the inventory that pass `eligible`, filtered a window at a
        time (most pages need the first)."""
        rows: list[int] = []
        for start in range(0, len(inventory["tweet_ids"]), window):
            columns = {
                "tweet_id": np.array(inventory["tweet_ids"][start : start + window], dtype=np.int64),
                "author_id": np.array(inventory["advertiser_ids"][start : start + window], dtype=np.int64),
            }
            rows += (np.flatnonzero(run_filters(self.eligible, query, columns).kept) + start).tolist()
            if len(rows) >= window:
                break
        return rows[:window]


def fitting_positions(entries: int, positions: list[int]) -> list[int]:
    """The 1-based positions, in order, at which an insertion still lands inside a page of
    `entries` entries growing by each insertion."""
    fitting = []
    for position in sorted(positions):
        if position - 1 <= entries + len(fitting):
            fitting.append(position)
    return fitting


def place(entries: list[Entry], extra: dict[int, Entry]) -> list[Entry]:
    """`entries` with each of `extra` at its 1-based position, in position order (a position past
    the end of the list grown so far is dropped)."""
    placed = list(entries)
    for position in sorted(extra):
        if position - 1 <= len(placed):
            placed.insert(position - 1, extra[position])
    return placed
