"""The request-time filters, each declared once, with its identifier from `core.filters`, and run by
For You (`serving.for_you`), Following and lists (`serving.timelines`) and the mixer
(`serving.mixing`) alike.

A filter reads columns (`serving.components`): `tweet_id` and `author_id` of any candidates; those
of the tweets a page window read add `exists` (the tweet exists and was not deleted), `is_nsfw` and
`retweet_of` (0: not a retweet), see `serving.candidates.TweetColumns`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core import filters as names
from core.feed_heuristics import fatigue_multiplier
from serving.components import Columns, Filter, FilterQuery, FilterResult

MS_PER_DAY = 86_400_000


def members(values: np.ndarray, ids: set[int] | frozenset[int]) -> np.ndarray:
    """Which of `values` are in `ids` (a bool mask): a hash lookup each, except for a few ids among
    many values, where `np.isin` compares each id with all values at once (an `isin` of a large
    set, as a viewer's thousands of impressions, sorts them all: far dearer than the lookups)."""
    if len(ids) <= _FEW_IDS and len(values) > _MANY_VALUES:
        return np.isin(values, np.fromiter(ids, dtype=np.int64, count=len(ids)))
    return np.array([value in ids for value in values.tolist()], dtype=bool)


_FEW_IDS, _MANY_VALUES = 8, 256


class SelfTweetFilter:
    """The viewer's own tweets."""

    identifier: ClassVar[str] = names.SELF

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        return FilterResult(alive & (columns["author_id"] == query.state.user_id))


class BlockedMutedFilter:
    """Tweets of authors the viewer blocked or muted, before the build or since."""

    identifier: ClassVar[str] = names.BLOCKED_MUTED

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        hidden = query.state.hidden_authors
        if not hidden:  # the columns are not read: a window's are made when first read
            return FilterResult(np.zeros(len(alive), dtype=bool))
        return FilterResult(alive & members(columns["author_id"], hidden))


class PreviouslySeenFilter:
    """Tweets the viewer had an impression of (or engaged with)."""

    identifier: ClassVar[str] = names.SEEN

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        if not query.state.seen:
            return FilterResult(np.zeros(len(alive), dtype=bool))
        return FilterResult(alive & members(columns["tweet_id"], query.state.seen))


class FeedbackFatigueFilter:
    """Tweets of authors the viewer said "not interested" in within the heuristics' drop window;
    the older ones' scores are discounted, recovering linearly (`core.feed_heuristics`)."""

    identifier: ClassVar[str] = names.FEEDBACK_FATIGUE

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        not_interested = query.state.not_interested_ms
        if not not_interested:  # no discount (a multiplier of 1 each) and nothing removed
            return FilterResult(np.zeros(len(alive), dtype=bool))
        days_since = np.array(
            [
                (query.now_ms - not_interested[a]) / MS_PER_DAY if a in not_interested else np.nan
                for a in columns["author_id"].tolist()
            ]
        )
        fatigue = fatigue_multiplier(days_since, query.heuristics)
        return FilterResult(alive & (fatigue == 0.0), discount=fatigue)


class DeletedFilter:
    """Tweets deleted since the build (or that never existed): never served, whatever the filters
    a pipeline enables."""

    identifier: ClassVar[str] = names.DELETED

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        return FilterResult(alive & ~columns["exists"])


class NsfwFilter:
    """Sensitive tweets, unless the viewer opted in."""

    identifier: ClassVar[str] = names.NSFW

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        if query.state.allow_nsfw:
            return FilterResult(np.zeros(len(alive), dtype=bool))
        return FilterResult(alive & columns["is_nsfw"])


class DuplicateFilter:
    """A tweet already shown (`FilterQuery.shown`) or earlier among these candidates; where the
    columns say what a tweet retweets, a retweet and the tweet it retweets are one."""

    identifier: ClassVar[str] = names.DUPLICATE

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        tweet_ids, retweet_of = columns["tweet_id"], columns.get("retweet_of")
        ids = tweet_ids.tolist()
        originals = ids if retweet_of is None else np.where(retweet_of > 0, retweet_of, tweet_ids).tolist()
        shown, here = query.shown, set()
        removed = np.zeros(len(ids), dtype=bool)
        for row in np.flatnonzero(alive).tolist():  # in order: the first of two duplicates is kept
            tweet_id, original = ids[row], originals[row]
            if tweet_id in shown or original in shown or tweet_id in here or original in here:
                removed[row] = True
            else:
                here.add(tweet_id)
                here.add(original)
        return FilterResult(removed)


# Those a tweet shown in a module (an ancestor, an ad) passes as well as the page's own tweets.
VISIBLE: tuple[Filter, ...] = (DeletedFilter(), BlockedMutedFilter(), NsfwFilter())
