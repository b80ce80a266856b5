"""The request pipelines: For You, Following and list timelines, as Home Mixer's product pipelines
do at request time what the batch build could not know.

The stages of For You, which `serving.for_you` orders per page: `cheap_filters` (filters on the
feed's columns), `with_fresh_tweets` (in-network injection), `rerank` (the batch heavy score
rescaled by the out-of-network and reply factors, the fatigue discount and an age decay, author
diversity over what survived, then the page assembly of `core.feed_heuristics`), `RankedCandidates`
and `fill_page` (the metadata filters while a page fills, the out-of-network run limit again).

Following and lists (`chronological_page`): the published recent tweets of the followed accounts
(or list members) merged with the tweets they posted since the build, newest first, blocked,
muted, deleted and (for viewers who did not opt in) NSFW tweets removed; the cursor is the
(created_at, tweet_id) of the last tweet served.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import repeat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from datetime import datetime, timezone

import numpy as np

from core.feed_heuristics import (
    FeedHeuristics,
    apply_multiplier,
    assemble_pages,
    author_diversity_multipliers,
    fatigue_multiplier,
)
from core import redis_layout as rl
from core.filters import REQUEST_FILTERS
from core.heads import HEAD_COLUMNS as HEADS
from core.sources import CANDIDATE_SOURCES, FRESH_SOURCE
from serving.store import Store, UserState

MS_PER_DAY = 86_400_000
Removed = dict[str, list[int]]  # filter -> the tweet ids it removed (a defaultdict(list))
# Every filter's identifier, in the order they apply.
FILTERS = REQUEST_FILTERS
# Candidates injected at request time carry this source bit, after the batch sources' bits.
FRESH_SOURCE_BIT = len(CANDIDATE_SOURCES)
SOURCES = (*CANDIDATE_SOURCES, FRESH_SOURCE)


@dataclass(frozen=True)
class RerankConfig:
    heuristics: FeedHeuristics = FeedHeuristics()
    age_half_life_hours: float = 48.0  # request-time decay: score × max(floor, 0.5 ** (age / half-life))
    age_decay_floor: float = 0.5


@dataclass
class Candidate:
    tweet_id: int
    author_id: int
    created_at_ms: int
    score: float
    is_in_network: bool
    sources: tuple[str, ...] = ()
    social_proof_user_ids: tuple[int, ...] = ()
    probabilities: dict[str, float] = field(default_factory=dict)
    batch_rank: int | None = None


def cheap_filters(columns: dict[str, np.ndarray], state: UserState, served: set[int], *, now_ms: float,
                  heuristics: FeedHeuristics, enabled: frozenset[str] = frozenset(FILTERS),
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(indices of the feed items that survive, their fatigue multiplier, the indices each
    `enabled` filter removed). Items already served by earlier pages are skipped without counting."""
    tweet_ids, authors = columns["tweet_id"], columns["author_id"]
    alive = ~np.isin(tweet_ids, np.fromiter(served, dtype=np.int64, count=len(served)))
    removed: dict[str, np.ndarray] = {}

    def apply(name: str, mask: np.ndarray) -> None:
        nonlocal alive
        if name not in enabled:
            return
        removed[name] = np.flatnonzero(alive & mask)
        alive = alive & ~mask

    apply("self", authors == state.user_id)
    hidden = state.hidden_authors
    apply("blocked_muted", np.isin(authors, np.fromiter(hidden, dtype=np.int64, count=len(hidden))))
    apply("seen", np.isin(tweet_ids, np.fromiter(state.seen, dtype=np.int64, count=len(state.seen))))
    days_since = np.array([(now_ms - state.not_interested_ms[a]) / MS_PER_DAY if a in state.not_interested_ms
                           else np.nan for a in authors.tolist()]) if state.not_interested_ms else np.full(len(authors), np.nan)
    fatigue = fatigue_multiplier(days_since, heuristics) if "feedback_fatigue" in enabled else np.ones(len(authors))
    apply("feedback_fatigue", fatigue == 0.0)
    kept = np.flatnonzero(alive)
    return kept, fatigue[kept], removed


def with_fresh_tweets(columns: dict[str, np.ndarray], fresh: list[tuple[int, int, float]]) -> dict[str, np.ndarray]:
    """The feed's columns with the followees' tweets posted since the build appended (those not in
    it already), as in-network candidates of source `fresh`, batch rank 0 and no head probabilities.
    Their heavy score is a documented heuristic, not a model: the 75th percentile of the heavy
    scores of the feed's in-network items (of all items when it has none): a followee's new tweet is
    taken to be as good as a good in-network tweet, and the request-time age decay then favours it
    while it is young."""
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
    merged["social_proof_offsets"] = np.concatenate([offsets, np.full(n, offsets[-1] if len(offsets) else 0,
                                                                      dtype=offsets.dtype)])
    merged["social_proof_user_ids"] = columns["social_proof_user_ids"]
    return merged


def rerank(columns: dict[str, np.ndarray], kept: np.ndarray, fatigue: np.ndarray, *, now_ms: float,
           config: RerankConfig, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(feed indices in serving order, their request-time scores): see the module docstring.
    `limit`: only the first `limit` of that order (the page assembly walks one row at a time, and
    stopping it early leaves the rows before unchanged)."""
    if len(kept) == 0:
        return kept, np.empty(0)
    h = config.heuristics
    in_network = columns["is_in_network"][kept].astype(bool)
    is_reply = columns["is_reply"][kept].astype(bool)
    age_hours = np.maximum(now_ms - columns["created_at_ms"][kept], 0) / 3_600_000
    decay = np.maximum(config.age_decay_floor, 0.5 ** (age_hours / config.age_half_life_hours))
    penalty = np.where(in_network, 1.0, h.out_of_network_scale) * np.where(is_reply, h.reply_scale, 1.0) * fatigue * decay
    score = apply_multiplier(columns["heavy_score"][kept], penalty)
    final = apply_multiplier(score, author_diversity_multipliers(columns["author_id"][kept], score, h))
    order = np.lexsort((columns["tweet_id"][kept], -final))
    ordered_in_network = in_network[order]
    picked, _ = assemble_pages(np.flatnonzero(ordered_in_network).tolist(), np.flatnonzero(~ordered_in_network).tolist(),
                               replace(h, max_rows=len(order) if limit is None else min(limit, len(order)),
                                       page_size=max(len(order), 1)))
    chosen = order[np.asarray(picked, dtype=np.intp)]
    return kept[chosen], final[chosen]


@lru_cache(maxsize=1024)
def source_names(bits: int) -> tuple[str, ...]:
    """The sources a feed item's `sources` bit set names."""
    return tuple(s for bit, s in enumerate(SOURCES) if bits >> bit & 1)


class RankedCandidates(Sequence[Candidate]):
    """The feed's items in serving order, each made a Candidate only when read: a request reads a
    page's worth of a feed of hundreds, a window at a time (one gather per column per window).
    `heads`: the head probabilities the candidates carry (only the explain page shows them)."""

    def __init__(self, columns: dict[str, np.ndarray], indices: np.ndarray, scores: np.ndarray, *,
                 heads: Sequence[str] = HEADS):
        self.columns, self.indices, self.scores, self.heads = columns, indices, scores, tuple(heads)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._candidates(np.arange(len(self))[key])
        return self._candidates(np.array([range(len(self))[key]]))[0]

    def _candidates(self, positions: np.ndarray) -> list[Candidate]:
        rows = self.indices[positions]
        c = {name: self.columns[name][rows].tolist() for name in (*_CANDIDATE_COLUMNS, *self.heads)}
        starts = self.columns["social_proof_offsets"][rows].tolist()
        ends = self.columns["social_proof_offsets"][rows + 1].tolist()
        proof = self.columns["social_proof_user_ids"]
        heads = [(head[2:], c[head]) for head in self.heads]
        return [
            Candidate(tweet_id=tweet_id, author_id=author_id, created_at_ms=created, score=score,
                      is_in_network=bool(in_network), sources=source_names(bits),
                      social_proof_user_ids=tuple(proof[start:end].tolist()) if end > start else (),
                      probabilities={head: values[j] for head, values in heads}, batch_rank=rank)
            for j, (tweet_id, author_id, created, score, in_network, bits, start, end, rank) in enumerate(zip(
                c["tweet_id"], c["author_id"], c["created_at_ms"], self.scores[positions].tolist(),
                c["is_in_network"], c["sources"], starts, ends, c["rank"]))
        ]


_CANDIDATE_COLUMNS = ("tweet_id", "author_id", "created_at_ms", "is_in_network", "sources", "rank")


async def fill_page(store: Store, version: int, ordered: Sequence[Candidate], count: int, *, state: UserState,
                    served: set[int], removed: Removed, slack: int, enabled: frozenset[str] = frozenset(FILTERS),
                    retweeted: frozenset[int] = frozenset(), max_out_of_network_in_a_row: int | None = None,
                    ) -> tuple[list[tuple[Candidate, dict]], set[int]]:
    """The first `count` candidates of `ordered` that pass the metadata filters (deleted, NSFW,
    duplicate), reading metadata a window at a time: ([(candidate, tweet)], the tweets the page's
    retweets point at). `retweeted`: those of earlier pages, duplicates of a tweet served already.

    The filters can remove the in-network tweet that separated two out-of-network runs, so the run
    limit is enforced again here: an out-of-network tweet past the limit waits for the next
    in-network one (and follows it), or for the end of the candidates; one still waiting when the
    page is full is not settled and leads the next page."""
    page: list[tuple[Candidate, dict]] = []
    canonical_served = set(served) | retweeted
    waiting: list[tuple[Candidate, dict]] = []
    run = 0
    limit = max_out_of_network_in_a_row if max_out_of_network_in_a_row is not None else count

    def add(item: tuple[Candidate, dict]) -> None:
        nonlocal run
        page.append(item)
        run = 0 if item[0].is_in_network else run + 1

    position = 0
    while len(page) < count and position < len(ordered):
        window = ordered[position:position + count - len(page) + slack]
        tweets = await store.tweets(version, (c.tweet_id for c in window), deletions_read=state.deletions_read)
        for candidate in window:
            position += 1
            tweet = tweets.get(candidate.tweet_id)
            if tweet is None:  # deleted: never served, whatever the filters enabled
                removed["deleted"].append(candidate.tweet_id)
                continue
            if "nsfw" in enabled and tweet["is_nsfw"] and not state.allow_nsfw:
                removed["nsfw"].append(candidate.tweet_id)
                continue
            original = tweet["retweet_of_tweet_id"] or candidate.tweet_id
            if "duplicate" in enabled and (original in canonical_served or candidate.tweet_id in canonical_served):
                removed["duplicate"].append(candidate.tweet_id)
                continue
            canonical_served.update((original, candidate.tweet_id))
            if not candidate.is_in_network and run >= limit:
                waiting.append((candidate, tweet))
                continue
            add((candidate, tweet))
            while waiting and run < limit and len(page) < count:
                add(waiting.pop(0))
            if len(page) == count:
                break
    while waiting and len(page) < count:  # no in-network candidate is left to space them out
        add(waiting.pop(0))
    return page, {tweet["retweet_of_tweet_id"] for _, tweet in page if tweet["retweet_of_tweet_id"]}


def built_at_ms(pointer: dict) -> float:
    value = pointer.get("built_as_of") or pointer.get("as_of") or pointer.get("published_at")
    if not value:
        return 0.0
    return datetime.fromisoformat(value).astimezone(timezone.utc).timestamp() * 1000


# A chronological candidate: (created ms, tweet id, author id or -1 when unknown, sources), sorted
# newest first as plain tuples; a Candidate is made only for the tweets a page reads.
Row = tuple[int, int, int, tuple[str, ...]]


async def chronological_candidates(store: Store, authors: list[int], *,
                                   published: list[tuple[list[int], list[int], list[int]]],
                                   since_ms: float, posted_since: set[int] | None = None,
                                   fresh: list[tuple[int, int, float]] | None = None) -> list[Row]:
    """Tweets of `authors`, the published ones ((tweet_ids, author_ids, created_at_ms) per record)
    and those posted since `since_ms` (`fresh`, when already read by `Store.new_tweets_of`), newest
    first (ties: higher id first), each once."""
    rows: dict[int, Row] = {}
    for tweet_ids, author_ids, created in published:
        rows.update(zip(tweet_ids, zip(created, tweet_ids, author_ids, repeat(()))))
    if fresh is None:
        fresh = await store.new_tweets_of(authors, since_ms=since_ms, posted_since=posted_since)
    for tweet_id, author, created_ms in fresh:
        rows.setdefault(tweet_id, (int(created_ms), tweet_id, author, ()))
    return sorted(rows.values(), reverse=True)


def older_than(rows: list[Row], before: tuple[int, int] | None) -> list[Row]:
    """The rows after a cursor's (created ms, tweet id) in newest-first order."""
    if before is None:
        return rows
    before = tuple(before)
    return [row for row in rows if (row[0], row[1]) < before]


async def chronological_page(store: Store, version: int, rows: list[Row], count: int, *,
                             state: UserState | None, slack: int) -> tuple[list[tuple[Candidate, dict]], Removed]:
    """Newest first: blocked and muted authors, deleted tweets and (unless the viewer opted in)
    NSFW tweets removed."""
    removed: Removed = defaultdict(list)
    hidden = state.hidden_authors if state else set()
    visible = [row for row in rows if row[2] not in hidden]
    if len(visible) < len(rows):
        removed["blocked_muted"].extend(row[1] for row in rows if row[2] in hidden)
    page: list[tuple[Candidate, dict]] = []
    position = 0
    while len(page) < count and position < len(visible):
        window = visible[position:position + count - len(page) + slack]
        tweets = await store.tweets(version, (row[1] for row in window),
                                   deletions_read=state is not None and state.deletions_read)
        for created_ms, tweet_id, _, sources in window:
            position += 1
            tweet = tweets.get(tweet_id)
            if tweet is None:
                removed["deleted"].append(tweet_id)
            elif tweet["author_id"] in hidden:  # rows of unknown author (popular) are checked here
                removed["blocked_muted"].append(tweet_id)
            elif tweet["is_nsfw"] and not (state and state.allow_nsfw):
                removed["nsfw"].append(tweet_id)
            else:
                author = tweet["author_id"]
                in_network = state is not None and author in state.following
                page.append((Candidate(tweet_id, author, tweet["created_at_ms"], 0.0, in_network, sources), tweet))
                if len(page) == count:
                    break
    return page, removed
