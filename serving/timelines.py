"""The chronological request pipeline: Following and list timelines (and For You's fallback page).

The published recent tweets of the followed accounts (or list members) merged with the tweets they
posted since the build (`chronological_candidates`), newest first, as columns; then a page of them
(`chronological_page`) after the filters of `CHRONOLOGICAL`: blocked and muted authors on the
candidates' authors, then, a window of metadata at a time, deleted tweets, blocked and muted
authors again (a popular tweet of For You's fallback comes without its author) and, for viewers
who did not opt in, NSFW tweets. The cursor is the (created_at, tweet_id) of the last tweet served.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from serving.candidates import Candidate, TweetColumns, source_names
from serving.components import Filter, FilterQuery, Removed, add_removed, run_filters
from serving.filters import VISIBLE, BlockedMutedFilter
from serving.selectors import PageItem
from serving.store import Store, UserState

# Chronological candidates as columns, newest first (ties: higher id first): created_at_ms,
# tweet_id, author_id (-1: not known before the metadata is read) and sources (bits, as a feed's).
Rows = dict[str, np.ndarray]
# Published tweets of some authors: (tweet ids, their authors, their creation ms), equal lengths.
Published = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ChronologicalPipeline:
    """Following's and lists' filters, by stage, in the order they run."""

    candidate_filters: tuple[Filter, ...]  # on the candidates' columns
    tweet_filters: tuple[Filter, ...]  # on the metadata, a window at a time, while the page fills

    @property
    def identifiers(self) -> tuple[str, ...]:
        """The filters' identifiers, each once, in the order they first apply (the `filtered` counts)."""
        return tuple(dict.fromkeys(f.identifier for f in (*self.candidate_filters, *self.tweet_filters)))


CHRONOLOGICAL = ChronologicalPipeline(candidate_filters=(BlockedMutedFilter(),), tweet_filters=VISIBLE)


def author_timelines(records: dict[int, dict]) -> Published:
    """The published tweets of `records` (author id -> its `AUTHOR_TWEETS` record)."""
    values = list(records.values())
    tweet_ids = np.fromiter(chain.from_iterable(r["tweet_ids"] for r in values), dtype=np.int64)
    created = np.fromiter(chain.from_iterable(r["created_at_ms"] for r in values), dtype=np.int64)
    authors = np.repeat(np.fromiter(records, dtype=np.int64, count=len(records)), [len(r["tweet_ids"]) for r in values])
    return tweet_ids, authors, created


def list_timeline(record: dict | None) -> Published:
    """The published tweets of a `LIST_TIMELINES` record (none without one)."""
    if not record:
        return _EMPTY
    return (
        np.array(record["tweet_ids"], dtype=np.int64),
        np.array(record["author_ids"], dtype=np.int64),
        np.array(record["created_at_ms"], dtype=np.int64),
    )


_EMPTY: Published = (np.empty(0, dtype=np.int64),) * 3


async def chronological_candidates(
    store: Store,
    authors: list[int],
    *,
    published: Published,
    since_ms: float,
    posted_since: set[int] | None = None,
    fresh: list[tuple[int, int, float]] | None = None,
) -> Rows:
    """Tweets of `authors`: the `published` ones and those posted since `since_ms` (`fresh`, when
    already read by `Store.new_tweets_of`), each once (a published one as published), newest first."""
    if fresh is None:
        fresh = await store.new_tweets_of(authors, since_ms=since_ms, posted_since=posted_since)
    tweet_ids, author_ids, created = published
    if len(tweet_ids):  # a tweet published twice: its last record, as a dict of them would keep
        last = len(tweet_ids) - 1 - np.unique(tweet_ids[::-1], return_index=True)[1]
        tweet_ids, author_ids, created = tweet_ids[last], author_ids[last], created[last]
    if fresh:
        fresh_ids = np.array([t for t, _, _ in fresh], dtype=np.int64)
        first = np.unique(fresh_ids, return_index=True)[1]
        first = first[~np.isin(fresh_ids[first], tweet_ids)]
        tweet_ids = np.concatenate([tweet_ids, fresh_ids[first]])
        author_ids = np.concatenate([author_ids, np.array([a for _, a, _ in fresh], dtype=np.int64)[first]])
        created = np.concatenate([created, np.array([int(ms) for _, _, ms in fresh], dtype=np.int64)[first]])
    newest_first = np.lexsort((tweet_ids, created))[::-1]
    return {
        "created_at_ms": created[newest_first],
        "tweet_id": tweet_ids[newest_first],
        "author_id": author_ids[newest_first],
        "sources": np.zeros(len(tweet_ids), dtype=np.uint8),
    }


def concat_rows(first: Rows, then: Rows) -> Rows:
    return {name: np.concatenate([first[name], then[name]]) for name in first}


def take_rows(rows: Rows, mask: np.ndarray) -> Rows:
    return {name: column[mask] for name, column in rows.items()}


def older_than(rows: Rows, before: tuple[int, int] | None) -> Rows:
    """The rows after a cursor's (created ms, tweet id) in newest-first order."""
    if before is None:
        return rows
    created_ms, tweet_id = before
    created = rows["created_at_ms"]
    return take_rows(rows, (created < created_ms) | ((created == created_ms) & (rows["tweet_id"] < tweet_id)))


async def chronological_page(
    store: Store, version: int, rows: Rows, count: int, *, state: UserState, slack: int
) -> tuple[list[PageItem], Removed]:
    """The first `count` of `rows` that pass `CHRONOLOGICAL`'s filters, and the ids each removed."""
    query = FilterQuery(state=state)
    removed: Removed = {}
    by_author = run_filters(CHRONOLOGICAL.candidate_filters, query, rows)
    add_removed(removed, by_author.removed_ids(rows))
    visible = np.flatnonzero(by_author.kept)
    named: dict[int, tuple[str, ...]] = {}  # a row's sources bits -> their names
    page: list[PageItem] = []
    position = 0
    while len(page) < count and position < len(visible):
        rows_read = visible[position : position + count - len(page) + slack]
        window, sources = rows["tweet_id"][rows_read].tolist(), rows["sources"][rows_read].tolist()
        tweets = await store.tweets(version, window, deletions_read=state.deletions_read)
        columns = TweetColumns(window, tweets)
        filtered = run_filters(CHRONOLOGICAL.tweet_filters, query, columns)
        read = len(window)
        for i in np.flatnonzero(filtered.kept).tolist():
            tweet = tweets[window[i]]
            author = tweet["author_id"]
            bits = sources[i]
            if bits not in named:
                named[bits] = source_names(bits)
            page.append(
                (
                    Candidate(window[i], author, tweet["created_at_ms"], 0.0, author in state.following, named[bits]),
                    tweet,
                )
            )
            if len(page) == count:
                read = i + 1
                break
        add_removed(removed, filtered.removed_ids(columns, before=read))
        position += read
    return page, removed
