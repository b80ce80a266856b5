"""The For You request pipeline, declared by `FOR_YOU` (its sources, filters, scorer and selectors,
each a component of `serving.components`' kinds) and run for one page by `for_you_timeline`, with
what `ForYouConfig` enables; it times each stage and keeps the trace the explain page shows.

Per page: the ranked feed (`RankedFeedSource`) with the followees' tweets since the build
(`FreshInNetworkSource`); the filters on the feed's columns, cheapest first; the light rerank
(`LightRerankScorer`) and the serving order (`InNetworkPageAssembly`) of a few pages' worth; the
page filled a window of metadata at a time through the tweet filters and the run limit
(`OutOfNetworkRunLimit`); then the modules and ads (`serving.mixing`). Without a ranked feed, or
when the filters remove everything, the page is the fallback's (`FallbackSource`, through the
chronological pipeline of `serving.timelines`).

Sources fail open, each as declared: a source whose read fails is counted
(`homefeed_source_failures_total`) and the page is built without it; a failing ranked feed turns
the page into the fallback (followees' recent tweets, then popular ones), never an empty timeline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import redis.exceptions

from core.filters import DELETED, REQUEST_FILTERS
from core.heads import HEADS
from serving.candidates import Candidate, RankedCandidates, TweetColumns
from serving.components import Filter, FilterQuery, Removed, Scorer, add_removed, run_filters
from serving.filters import (
    BlockedMutedFilter,
    DeletedFilter,
    DuplicateFilter,
    FeedbackFatigueFilter,
    NsfwFilter,
    PreviouslySeenFilter,
    SelfTweetFilter,
    members,
)
from serving.mixing import (
    ConversationModules,
    Entry,
    MixingConfig,
    PromotedSlots,
    WhoToFollowModule,
    fitting_positions,
    place,
)
from serving.scorers import LightRerankScorer, RerankConfig
from serving.selectors import InNetworkPageAssembly, OutOfNetworkRunLimit, PageItem
from serving.sources import FallbackSource, FreshInNetworkSource, RankedFeedSource
from serving.store import Store, UserState
from serving.timelines import chronological_page

FAILURES = (redis.exceptions.RedisError, ValueError, KeyError)


@dataclass(frozen=True)
class ForYouPipeline:
    """The For You pipeline's components, by stage, in the order they run."""

    ranked_feed: RankedFeedSource
    fresh: FreshInNetworkSource
    feed_filters: tuple[Filter, ...]  # on the feed's columns, cheapest first
    scorer: Scorer
    selector: InNetworkPageAssembly
    tweet_filters: tuple[Filter, ...]  # on the tweets' metadata, a window at a time, while the page fills
    fallback: FallbackSource
    conversations: ConversationModules
    who_to_follow: WhoToFollowModule
    promoted: PromotedSlots

    @property
    def sources(self) -> tuple[str, ...]:
        """The identifiers of the sources that fail open, as `ForYouConfig.sources` names them."""
        return tuple(
            s.identifier for s in (self.ranked_feed, self.fresh, self.conversations, self.who_to_follow, self.promoted)
        )

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(f.identifier for f in (*self.feed_filters, *self.tweet_filters))

    def configured(self, config: ForYouConfig) -> ForYouPipeline:
        """This pipeline with the filters `config` enables (deleted tweets are removed whatever it
        says) and its scorer's parameters."""
        enabled = {*config.filters, DELETED}
        return replace(
            self,
            feed_filters=tuple(f for f in self.feed_filters if f.identifier in enabled),
            tweet_filters=tuple(f for f in self.tweet_filters if f.identifier in enabled),
            scorer=LightRerankScorer(config.scorer),
            selector=InNetworkPageAssembly(config.scorer.heuristics),
        )


FOR_YOU = ForYouPipeline(
    ranked_feed=RankedFeedSource(),
    fresh=FreshInNetworkSource(),
    feed_filters=(SelfTweetFilter(), BlockedMutedFilter(), PreviouslySeenFilter(), FeedbackFatigueFilter()),
    scorer=LightRerankScorer(),
    selector=InNetworkPageAssembly(),
    tweet_filters=(DeletedFilter(), NsfwFilter(), DuplicateFilter()),
    fallback=FallbackSource(),
    conversations=ConversationModules(),
    who_to_follow=WhoToFollowModule(),
    promoted=PromotedSlots(),
)
# Every source of the pipeline; a source not declared in the config is not read.
SOURCES = FOR_YOU.sources


@dataclass(frozen=True)
class ForYouConfig:
    sources: tuple[str, ...] = SOURCES  # each fails open
    filters: tuple[str, ...] = REQUEST_FILTERS  # request-time filters (deleted tweets are always removed)
    scorer: RerankConfig = RerankConfig()  # light reranking of the batch scores
    mixing: MixingConfig = MixingConfig()
    metadata_slack: int = 10  # candidates beyond the page whose metadata one round trip reads
    rerank_depth: int = 2  # pages (with slack) of the order ranked first; all when not enough
    fallback_popular: int = 100  # popular tweets after the fallback's in-network ones

    def __post_init__(self) -> None:
        unknown = (set(self.sources) - set(SOURCES)) | (set(self.filters) - set(REQUEST_FILTERS))
        if unknown:
            raise ValueError(f"unknown For You sources or filters: {sorted(unknown)}")


@lru_cache(maxsize=16)
def configured_pipeline(config: ForYouConfig) -> ForYouPipeline:
    return FOR_YOU.configured(config)


@dataclass
class ForYouResult:
    entries: list[Entry]
    next_state: dict | None  # what the next page's cursor carries; None on the last page
    fallback_reason: str | None  # no_feed, all_filtered, source_failed, continued (a fallback's later page)
    removed: Removed  # filter -> tweet ids removed on this page
    failed_sources: list[str] = field(default_factory=list)
    ranked: Sequence[Candidate] = ()  # the reranked order the page was cut from (its head, see rerank_depth)
    kept_count: int = 0  # the candidates the request-time filters kept
    feed: dict[str, np.ndarray] | None = None  # the feed's columns, fresh tweets included


@dataclass(frozen=True)
class ForYouQuery:
    """One page's request: `served`, the ids settled on the session's earlier pages (the cursor's),
    `retweeted` what their retweets point at."""

    store: Store
    version: int
    state: UserState
    count: int
    now_ms: float
    built_ms: float
    config: ForYouConfig
    served: frozenset[int] = frozenset()
    retweeted: frozenset[int] = frozenset()


@dataclass
class FailOpen:
    """Reads of the sources `declared`, each failing open: a source not declared, or whose read
    fails, gives its default; the failed ones are listed in `failed`."""

    declared: frozenset[str]
    failed: list[str] = field(default_factory=list)

    async def read(self, source: str, read: Callable[[], Awaitable], default):
        if source not in self.declared:
            return default
        try:
            return await read()
        except FAILURES:
            self.failed.append(source)
            return default


@dataclass
class RankedPage:
    page: list[PageItem] = field(default_factory=list)
    retweeted: set[int] = field(default_factory=set)  # what the page's retweets point at
    removed: Removed = field(default_factory=dict)
    order: Sequence[Candidate] = ()
    kept_count: int = 0
    feed: dict[str, np.ndarray] | None = None


async def fresh_tweets(
    store: Store, state: UserState, built_ms: float, config: ForYouConfig
) -> list[tuple[int, int, float]]:
    """(tweet_id, author_id, created ms) of the followees' tweets posted since the build; none when
    the source is not declared. A failing read raises (the caller fails open)."""
    if FOR_YOU.fresh.identifier not in config.sources:
        return []
    return await FOR_YOU.fresh.read(store, state, built_ms=built_ms)


def _untimed(stage: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


async def for_you_timeline(
    store: Store,
    version: int,
    state: UserState,
    *,
    cursor: dict,
    count: int,
    now_ms: float,
    built_ms: float,
    config: ForYouConfig = ForYouConfig(),
    timed: Callable[[str], contextlib.AbstractContextManager] = _untimed,
    mark_shown: bool = True,
    with_probabilities: bool = False,
    fresh: list[tuple[int, int, float]] | None = None,
) -> ForYouResult:
    """One page of the viewer's For You timeline: `cursor` is the state the previous page returned
    ({} for the first), `state` the viewer's (`Store.user_state`); `fresh`: the followees' tweets
    posted since the build when already read (`fresh_tweets`), else they are read here; `mark_shown` records a
    who-to-follow module as shown (the explain page does not); `with_probabilities`: the ranked
    candidates carry their head probabilities (the explain page shows them)."""
    query = ForYouQuery(
        store,
        version,
        state,
        count,
        now_ms,
        built_ms,
        config,
        served=frozenset(cursor.get("s", [])),
        retweeted=frozenset(cursor.get("r", [])),
    )
    pipeline = configured_pipeline(config)
    sources = FailOpen(frozenset(config.sources))
    reason = "continued" if cursor.get("f") else None
    if reason is None and pipeline.ranked_feed.identifier not in config.sources:
        reason = "source_failed"
    elif reason is None:
        reason = pipeline.ranked_feed.missing(state)
    ranked = RankedPage(feed=state.feed)
    if reason is None:
        ranked = await _ranked_page(
            pipeline, query, sources, fresh=fresh, timed=timed, heads=HEADS if with_probabilities else ()
        )
        if not ranked.page and not query.served:
            reason = "all_filtered"
    removed: Removed = {}
    add_removed(removed, ranked.removed)
    page, retweeted_now = ranked.page, ranked.retweeted
    if reason is not None:
        with timed("fallback"):
            page, fallback_removed = await _fallback_page(pipeline, query)
            add_removed(removed, fallback_removed)
            retweeted_now = set()
    with timed("mix"):
        entries = await _mix(pipeline, query, page, sources, mark_shown=mark_shown)
    next_state = _next_state(query, entries, removed, retweeted_now, reason) if len(page) == count else None
    return ForYouResult(
        entries, next_state, reason, removed, sources.failed, ranked.order, ranked.kept_count, ranked.feed
    )


def _next_state(
    query: ForYouQuery, entries: list[Entry], removed: Removed, retweeted_now: set[int], reason: str | None
) -> dict:
    """The next page's cursor state. Every tweet shown (ancestors and promoted ones included) or
    filtered out is settled: later pages of this session skip it, so none is shown twice and each
    removal is counted once."""
    settled = {c.tweet_id for e in entries for c, _ in e.tweets} | {t for ids in removed.values() for t in ids}
    state = {"s": sorted(query.served | settled)}
    if query.retweeted or retweeted_now:
        state["r"] = sorted(query.retweeted | retweeted_now)
    if reason is not None:
        state["f"] = 1
    return state


async def _ranked_page(
    pipeline: ForYouPipeline,
    query: ForYouQuery,
    sources: FailOpen,
    *,
    fresh: list[tuple[int, int, float]] | None,
    timed,
    heads: Sequence[str],
) -> RankedPage:
    """The feed (with the fresh tweets) filtered, scored, ordered and cut into a page. Most pages
    are cut from the head of the order: a few pages' worth is ordered first, all only if short."""
    state, config = query.state, query.config
    with timed("fresh"):
        if fresh is None:
            fresh = await sources.read(
                pipeline.fresh.identifier, lambda: pipeline.fresh.read(query.store, state, built_ms=query.built_ms), []
            )
        feed = pipeline.fresh.merge(state.feed, fresh)
    filter_query = FilterQuery(state=state, now_ms=query.now_ms, heuristics=config.scorer.heuristics)
    with timed("filter"):  # what earlier pages settled is not a candidate, nor counted again
        unsettled = ~members(feed["tweet_id"], query.served) if query.served else None
        filtered = run_filters(pipeline.feed_filters, filter_query, feed, unsettled)
        removed = filtered.removed_ids(feed)
        kept = np.flatnonzero(filtered.kept)
        discount = filtered.discount[kept] if filtered.discount is not None else np.ones(len(kept))
    scores = None
    for limit in (config.rerank_depth * (query.count + config.metadata_slack), None):
        with timed("rerank"):
            if scores is None:
                scores = pipeline.scorer.score(feed, kept, discount, now_ms=query.now_ms)
            rows, ordered_scores = pipeline.selector.select(feed, kept, scores, limit=limit)
            order = RankedCandidates(feed, rows, ordered_scores, heads=heads)
        with timed("hydrate"):
            page, retweeted, page_removed = await _fill_page(pipeline, query, order, filter_query)
        if len(page) == query.count or len(rows) == len(kept):
            break
    add_removed(removed, page_removed)
    return RankedPage(page, retweeted, removed, order, len(kept), feed)


async def _fill_page(
    pipeline: ForYouPipeline, query: ForYouQuery, ordered: Sequence[Candidate], filter_query: FilterQuery
) -> tuple[list[PageItem], set[int], Removed]:
    """The first `count` candidates of `ordered` that pass the tweet filters and the run limit,
    reading metadata a window at a time: (the page, the tweets its retweets point at, the ids each
    filter removed). A retweet of a tweet served already (or the reverse) is a duplicate."""
    state, count, slack = query.state, query.count, query.config.metadata_slack
    shown = set(query.served) | query.retweeted  # grows as the page fills
    tweet_query = FilterQuery(state, filter_query.now_ms, filter_query.heuristics, shown)
    selector = OutOfNetworkRunLimit(count, query.config.scorer.heuristics.max_out_of_network_in_a_row)
    removed: Removed = {}
    position = 0
    while not selector.full and position < len(ordered):
        window = ordered[position : position + count - len(selector.page) + slack]
        tweet_ids = [c.tweet_id for c in window]
        tweets = await query.store.tweets(query.version, tweet_ids, deletions_read=state.deletions_read)
        columns = TweetColumns(tweet_ids, tweets)
        filtered = run_filters(pipeline.tweet_filters, tweet_query, columns)
        kept = np.flatnonzero(filtered.kept)
        offered = selector.take([(window[i], tweets[tweet_ids[i]]) for i in kept.tolist()])
        read = int(kept[offered - 1]) + 1 if selector.full else len(window)
        shown.update(columns["tweet_id"][kept[:offered]].tolist())  # and what the retweets among them retweet
        retweet_of = columns["retweet_of"][kept[:offered]]
        shown.update(retweet_of[retweet_of > 0].tolist())
        add_removed(removed, filtered.removed_ids(columns, before=read))
        position += read
    page = selector.finish()
    return page, {tweet["retweet_of_tweet_id"] for _, tweet in page if tweet["retweet_of_tweet_id"]}, removed


async def _fallback_page(pipeline: ForYouPipeline, query: ForYouQuery) -> tuple[list[PageItem], Removed]:
    rows = await pipeline.fallback.read(
        query.store,
        query.version,
        query.state,
        served=query.served,
        since_ms=query.built_ms,
        popular=query.config.fallback_popular,
    )
    return await chronological_page(
        query.store, query.version, rows, query.count, state=query.state, slack=query.config.metadata_slack
    )


async def _mix(
    pipeline: ForYouPipeline, query: ForYouQuery, page: list[PageItem], sources: FailOpen, *, mark_shown: bool
) -> list[Entry]:
    """The page's entries: conversation modules, then the who-to-follow module and the promoted
    tweets at the positions that fit."""
    store, version, state, mixing = query.store, query.version, query.state, query.config.mixing
    entries = await sources.read(
        pipeline.conversations.identifier,
        lambda: pipeline.conversations.select(store, version, page, state=state, served=query.served, config=mixing),
        None,
    )
    if entries is None:
        entries = [Entry("tweet", [item]) for item in page]
    users = (
        pipeline.who_to_follow.users(state, now_ms=query.now_ms, config=mixing)
        if pipeline.who_to_follow.identifier in sources.declared
        else []
    )
    fitting = fitting_positions(
        len(entries), ([mixing.who_to_follow_position] if users else []) + list(mixing.promoted_positions)
    )
    extra: dict[int, Entry] = {}
    if users and mixing.who_to_follow_position in fitting:
        extra[mixing.who_to_follow_position] = Entry("who_to_follow", users=users)
    ad_positions = [p for p in fitting if p in mixing.promoted_positions]
    on_page = set(query.served) | {c.tweet_id for e in entries for c, _ in e.tweets}
    ads = await sources.read(
        pipeline.promoted.identifier,
        lambda: pipeline.promoted.select(
            store, version, state=state, exclude=on_page, slots=len(ad_positions), config=mixing
        ),
        [],
    )
    for position, ad in zip(ad_positions, ads):
        extra[position] = Entry("promoted", [ad])
    placed = place(entries, extra)
    if mark_shown and any(e.type == "who_to_follow" for e in placed):
        await sources.read(
            pipeline.who_to_follow.identifier,
            lambda: pipeline.who_to_follow.mark_shown(store, state, now_ms=query.now_ms, config=mixing),
            None,
        )
    return placed
