"""For You's candidate sources, each named by the identifier `ForYouConfig.sources` declares it by
(and its failures are counted under): the ranked feed, the followees' tweets since the build, and
the fallback's candidates. The modules' and ads' sources are `serving.mixing`'s."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core import redis_layout as rl
from serving.candidates import FRESH_SOURCE_BIT, POPULAR_SOURCE_BIT
from serving.components import FilterQuery
from serving.filters import PreviouslySeenFilter, members
from serving.store import Store, UserState
from serving.timelines import Rows, author_timelines, chronological_candidates, concat_rows, take_rows


class RankedFeedSource:
    """The viewer's precomputed ranked feed of the current version, read with the viewer's state
    (`Store.user_state`): a feed that cannot be decoded fails open to the fallback."""

    identifier: ClassVar[str] = "ranked_feed"

    def missing(self, state: UserState) -> str | None:
        """Why there is no feed to rank (the fallback's reason), or None."""
        if state.feed is not None and len(state.feed["tweet_id"]):
            return None
        return "source_failed" if state.feed_error else "no_feed"


class FreshInNetworkSource:
    """The followees' tweets posted since the build (through the events endpoint), injected into the
    feed as in-network candidates."""

    identifier: ClassVar[str] = "fresh_in_network"

    async def read(self, store: Store, state: UserState, *, built_ms: float) -> list[tuple[int, int, float]]:
        """(tweet_id, author_id, created ms) of each; a failing read raises (the pipeline fails open)."""
        return await store.new_tweets_of(state.following, since_ms=built_ms, posted_since=state.posted_since)

    @staticmethod
    def merge(columns: dict[str, np.ndarray], fresh: list[tuple[int, int, float]]) -> dict[str, np.ndarray]:
        """The feed's columns with the `fresh` tweets not in it already appended, as in-network
        candidates of source `fresh`, batch rank 0 and no head probabilities. Their heavy score is a
        documented heuristic, not a model: the 75th percentile of the heavy scores of the feed's
        in-network items (of all items when it has none): a followee's new tweet is taken to be as
        good as a good in-network tweet, and the request-time age decay then favours it while it is
        young."""
        known = set(columns["tweet_id"].tolist())
        fresh = sorted({t: (t, a, ms) for t, a, ms in fresh if t not in known}.values())
        if not fresh:
            return columns
        in_network = columns["is_in_network"].astype(bool)
        pool = columns["heavy_score"][in_network] if in_network.any() else columns["heavy_score"]
        prior = float(np.percentile(pool, 75)) if len(pool) else 1.0
        n = len(fresh)
        added = {name: np.zeros(n, dtype=dtype) for name, dtype in rl.FEED_COLUMNS}
        added["tweet_id"] = np.array([t for t, _, _ in fresh], dtype="<i8")
        added["author_id"] = np.array([a for _, a, _ in fresh], dtype="<i8")
        added["created_at_ms"] = np.array([ms for _, _, ms in fresh], dtype="<i8")
        added["final_score"][:] = added["heavy_score"][:] = prior
        added["is_in_network"][:] = 1
        added["sources"][:] = 1 << FRESH_SOURCE_BIT
        merged = {name: np.concatenate([columns[name], added[name]]) for name, _ in rl.FEED_COLUMNS}
        offsets = columns["social_proof_offsets"]
        merged["social_proof_offsets"] = np.concatenate(
            [offsets, np.full(n, offsets[-1] if len(offsets) else 0, dtype=offsets.dtype)]
        )
        merged["social_proof_user_ids"] = columns["social_proof_user_ids"]
        return merged


class FallbackSource:
    """The fallback's candidates: the followees' recent tweets newest first, then `popular` popular
    ones, less those served on earlier pages of the session or seen (not counted as filtered)."""

    identifier: ClassVar[str] = "fallback"

    async def read(
        self, store: Store, version: int, state: UserState, *, served: frozenset[int], since_ms: float, popular: int
    ) -> Rows:
        followees = sorted(state.following)
        published = await store.records(rl.AUTHOR_TWEETS, version, followees)
        rows = await chronological_candidates(
            store, followees, published=author_timelines(published), since_ms=since_ms, posted_since=state.posted_since
        )
        record = (await store.records(rl.POPULAR, version, [rl.POPULAR_ID])).get(rl.POPULAR_ID, {})
        known = set(rows["tweet_id"].tolist())
        extra = np.array([t for t in record.get("tweet_ids", [])[:popular] if t not in known], dtype=np.int64)
        rows = concat_rows(
            rows,
            {
                "created_at_ms": np.zeros(len(extra), dtype=np.int64),
                "tweet_id": extra,
                "author_id": np.full(len(extra), -1, dtype=np.int64),
                "sources": np.full(len(extra), 1 << POPULAR_SOURCE_BIT, dtype=np.uint8),
            },
        )
        unserved = ~members(rows["tweet_id"], served) if served else np.ones(len(rows["tweet_id"]), dtype=bool)
        seen = PreviouslySeenFilter().apply(FilterQuery(state=state), rows, unserved)
        return take_rows(rows, unserved & ~seen.removed)
