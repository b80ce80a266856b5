"""The For You request pipeline, declared by `ForYouConfig` (its sources, filters, scorer and
mixing) and run by `for_you_timeline` for one page. The stages are `serving.timelines` and
`serving.mixing`; this module orders them, times them, and keeps the trace the explain page shows.

Sources fail open, each as declared: a source whose read fails is counted
(`homefeed_source_failures_total`) and the page is built without it; a failing ranked feed turns
the page into the fallback (followees' recent tweets, then popular ones), never an empty timeline.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis.exceptions

from serving.mixing import Entry, MixingConfig, place, promoted_tweets, who_to_follow_users, with_conversations
from core.redis_layout import AUTHOR_TWEETS, POPULAR, POPULAR_ID
from serving.store import Store, UserState
from serving.timelines import (
    FILTERS,
    HEADS,
    Candidate,
    Removed,
    RerankConfig,
    cheap_filters,
    chronological_candidates,
    chronological_page,
    RankedCandidates,
    fill_page,
    rerank,
    with_fresh_tweets,
)

# Every source of the pipeline; a source not declared in the config is not read.
SOURCES = ("ranked_feed", "fresh_in_network", "conversations", "who_to_follow", "promoted")
FAILURES = (redis.exceptions.RedisError, ValueError, KeyError)


@dataclass(frozen=True)
class ForYouConfig:
    sources: tuple[str, ...] = SOURCES       # each fails open
    filters: tuple[str, ...] = FILTERS       # request-time filters, in order (deleted tweets are always removed)
    scorer: RerankConfig = RerankConfig()    # light reranking of the batch scores
    mixing: MixingConfig = MixingConfig()
    metadata_slack: int = 10                 # candidates beyond the page whose metadata one round trip reads
    rerank_depth: int = 2                    # pages (with slack) of the order ranked first; all when not enough
    fallback_popular: int = 100              # popular tweets after the fallback's in-network ones

    def __post_init__(self) -> None:
        unknown = (set(self.sources) - set(SOURCES)) | (set(self.filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown For You sources or filters: {sorted(unknown)}")


@dataclass
class ForYouResult:
    entries: list[Entry]
    next_state: dict | None            # what the next page's cursor carries; None on the last page
    fallback_reason: str | None        # no_feed, all_filtered, source_failed, continued (a fallback's later page)
    removed: Removed                   # filter -> tweet ids removed on this page
    failed_sources: list[str] = field(default_factory=list)
    ranked: Sequence[Candidate] = ()  # the reranked order the page was cut from (its head, see rerank_depth)
    kept_count: int = 0  # the candidates the request-time filters kept
    feed: dict[str, np.ndarray] | None = None              # the feed's columns, fresh tweets included


async def fresh_tweets(store: Store, state: UserState, built_ms: float, config: ForYouConfig) -> list[tuple[int, int, float]]:
    """(tweet_id, author_id, created ms) of the followees' tweets posted since the build; none when
    the source is not declared. A failing read raises (the caller fails open)."""
    if "fresh_in_network" not in config.sources:
        return []
    return await store.new_tweets_of(state.following, since_ms=built_ms, posted_since=state.posted_since)


def _untimed(stage: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def fitting_positions(entries: int, positions: list[int]) -> list[int]:
    """The 1-based positions, in order, at which an insertion still lands inside a page of
    `entries` entries growing by each insertion."""
    fitting = []
    for position in sorted(positions):
        if position - 1 <= entries + len(fitting):
            fitting.append(position)
    return fitting


async def for_you_timeline(store: Store, version: int, state: UserState, *, cursor: dict, count: int,
                           now_ms: float, built_ms: float, config: ForYouConfig = ForYouConfig(),
                           timed: Callable[[str], contextlib.AbstractContextManager] = _untimed,
                           mark_shown: bool = True, with_probabilities: bool = False,
                           fresh: list[tuple[int, int, float]] | None = None) -> ForYouResult:
    """One page of the viewer's For You timeline: `cursor` is the state the previous page returned
    ({} for the first), `state` the viewer's (`Store.user_state`); `fresh`: the followees' tweets
    posted since the build when already read (`fresh_tweets`), else they are read here; `mark_shown` records a
    who-to-follow module as shown (the explain page does not); `with_probabilities`: the ranked
    candidates carry their head probabilities (the explain page shows them)."""
    served: set[int] = set(cursor.get("s", []))
    retweeted = frozenset(cursor.get("r", []))  # what served retweets point at: their duplicates are filtered
    retweeted_now: set[int] = set()
    removed: Removed = defaultdict(list)
    failed: list[str] = []
    enabled = frozenset(config.filters)

    async def fail_open(source: str, read, default):
        if source not in config.sources:
            return default
        try:
            return await read()
        except FAILURES:
            failed.append(source)
            return default

    feed = state.feed
    reason = "continued" if cursor.get("f") else None
    if reason is None and "ranked_feed" not in config.sources:
        reason = "source_failed"
    elif reason is None and (feed is None or len(feed["tweet_id"]) == 0):
        reason = "source_failed" if state.feed_error else "no_feed"
    ranked: Sequence[Candidate] = ()
    kept_count = 0
    page: list[tuple[Candidate, dict]] = []
    if reason is None:
        with timed("fresh"):
            if fresh is None:
                fresh = await fail_open("fresh_in_network", lambda: fresh_tweets(store, state, built_ms, config), [])
            feed = with_fresh_tweets(feed, fresh)
        with timed("filter"):
            kept, fatigue, removed_at = cheap_filters(feed, state, served, now_ms=now_ms,
                                                      heuristics=config.scorer.heuristics, enabled=enabled)
            for name, indices in removed_at.items():
                removed[name].extend(feed["tweet_id"][indices].tolist())
        kept_count = len(kept)
        # Most pages are cut from the head of the order: rank a few pages' worth, all only if short.
        for limit in (config.rerank_depth * (count + config.metadata_slack), None):
            with timed("rerank"):
                indices, scores = rerank(feed, kept, fatigue, now_ms=now_ms, config=config.scorer, limit=limit)
                ranked = RankedCandidates(feed, indices, scores, heads=HEADS if with_probabilities else ())
            with timed("hydrate"):
                removed_here: Removed = defaultdict(list)
                page, retweeted_now = await fill_page(
                    store, version, ranked, count, state=state, served=served, removed=removed_here,
                    slack=config.metadata_slack, enabled=enabled, retweeted=retweeted,
                    max_out_of_network_in_a_row=config.scorer.heuristics.max_out_of_network_in_a_row)
            if len(page) == count or len(indices) == kept_count:
                break
        for name, ids in removed_here.items():
            removed[name].extend(ids)
        if not page and not served:
            reason = "all_filtered"
    if reason is not None:
        with timed("fallback"):
            page, retweeted_now = await fallback_page(store, version, state, served, count, since_ms=built_ms,
                                                   removed=removed, config=config)
    with timed("mix"):
        entries = await _mix(store, version, page, state, served, now_ms, config, fail_open, mark_shown=mark_shown)
    # Every tweet shown (ancestors and promoted ones included) or filtered out is settled: later pages
    # of this session skip it, so none is shown twice and each removal is counted once.
    settled = {c.tweet_id for e in entries for c, _ in e.tweets} | {t for ids in removed.values() for t in ids}
    next_state = None
    if len(page) == count:
        next_state = {"s": sorted(served | settled)}
        if retweeted or retweeted_now:
            next_state["r"] = sorted(retweeted | retweeted_now)
        if reason is not None:
            next_state["f"] = 1
    return ForYouResult(entries, next_state, reason, removed, failed, ranked, kept_count, feed)


async def _mix(store: Store, version: int, page, state: UserState, served: set[int], now_ms: float, config: ForYouConfig, fail_open, *, mark_shown: bool) -> list[Entry]:
    mixing = config.mixing
    entries = await fail_open("conversations", lambda: with_conversations(
        store, version, page, state=state, served=served, config=mixing), None)
    if entries is None:
        entries = [Entry("tweet", [item]) for item in page]
    users = who_to_follow_users(state, now_ms=now_ms, config=mixing) if "who_to_follow" in config.sources else []
    wanted = ([mixing.who_to_follow_position] if users else []) + list(mixing.promoted_positions)
    fitting = fitting_positions(len(entries), wanted)
    extra: dict[int, Entry] = {}
    if users and mixing.who_to_follow_position in fitting:
        extra[mixing.who_to_follow_position] = Entry("who_to_follow", users=users)
    ad_positions = [p for p in fitting if p in mixing.promoted_positions]
    on_page = served | {c.tweet_id for e in entries for c, _ in e.tweets}
    ads = await fail_open("promoted", lambda: promoted_tweets(
        store, version, state=state, exclude=on_page, slots=len(ad_positions), config=mixing), [])
    for position, ad in zip(ad_positions, ads):
        extra[position] = Entry("promoted", [ad])
    placed = place(entries, extra)
    if mark_shown and any(e.type == "who_to_follow" for e in placed):
        await fail_open("who_to_follow", lambda: store.mark_who_to_follow_shown(
            state.user_id, now_ms, ttl_seconds=int(mixing.who_to_follow_interval_hours * 3600)), None)
    return placed


async def fallback_page(store: Store, version: int, state: UserState, served: set[int], count: int, *,
                        since_ms: float, removed: Removed, config: ForYouConfig
                        ) -> tuple[list[tuple[Candidate, dict]], set[int]]:
    """The followees' recent tweets newest first, then popular ones, minus what was served or seen
    (and no retweets pointed at, which only ranked pages track)."""
    followees = sorted(state.following)
    published = await store.records(AUTHOR_TWEETS, version, followees)
    chronological = await chronological_candidates(
        store, followees, since_ms=since_ms, posted_since=state.posted_since,
        published=[(r["tweet_ids"], [a] * len(r["tweet_ids"]), r["created_at_ms"]) for a, r in published.items()])
    popular = (await store.records(POPULAR, version, [POPULAR_ID])).get(POPULAR_ID, {})
    known = {row[1] for row in chronological}
    extra = [(0, t, -1, ("popular",)) for t in popular.get("tweet_ids", [])[:config.fallback_popular] if t not in known]
    candidates = [row for row in chronological + extra if row[1] not in served and row[1] not in state.seen]
    page, more_removed = await chronological_page(store, version, candidates, count, state=state,
                                                  slack=config.metadata_slack)
    for name, ids in more_removed.items():
        removed[name].extend(ids)
    return page, set()
