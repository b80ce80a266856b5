"""Candidates as the pipelines hold them: columns while they are filtered and ranked, a `Candidate`
only for what a page reads, and the columns of the tweets a page window read (`TweetColumns`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from core.heads import HEADS, head_column
from core.sources import CANDIDATE_SOURCES, FRESH_SOURCE

# The names a candidate's `sources` bits stand for (a feed item's, `core.redis_layout.FEED_COLUMNS`):
# the batch's candidate sources, then the tweets injected at request time.
SOURCES: tuple[str, ...] = (*CANDIDATE_SOURCES, FRESH_SOURCE)
FRESH_SOURCE_BIT = SOURCES.index(FRESH_SOURCE)
POPULAR_SOURCE = "popular"  # the fallback's popular tweets carry it
POPULAR_SOURCE_BIT = SOURCES.index(POPULAR_SOURCE)
# The social context says "followed by" the proof of a tweet of a recommended account (and no
# engagement source), "liked by" otherwise.
FOLLOW_RECOMMENDATION_SOURCE, ENGAGEMENT_SOURCE = "frs", "uteg"


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


@lru_cache(maxsize=1024)
def source_names(bits: int) -> tuple[str, ...]:
    """The sources a `sources` bit set names."""
    return tuple(s for bit, s in enumerate(SOURCES) if bits >> bit & 1)


_CANDIDATE_COLUMNS = ("tweet_id", "author_id", "created_at_ms", "is_in_network", "sources", "rank")


class RankedCandidates(Sequence[Candidate]):
    """The feed's items in serving order, each made a Candidate only when read: a request reads a
    page's worth of a feed of hundreds, a window at a time (one gather per column per window).
    `heads`: the heads whose probabilities the candidates carry (only the explain page shows them)."""

    def __init__(
        self, columns: dict[str, np.ndarray], indices: np.ndarray, scores: np.ndarray, *, heads: Sequence[str] = HEADS
    ):
        self.columns, self.indices, self.scores, self.heads = columns, indices, scores, tuple(heads)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._candidates(np.arange(len(self))[key])
        return self._candidates(np.array([range(len(self))[key]]))[0]

    def _candidates(self, positions: np.ndarray) -> list[Candidate]:
        rows = self.indices[positions]
        c = {name: self.columns[name][rows].tolist() for name in _CANDIDATE_COLUMNS}
        starts = self.columns["social_proof_offsets"][rows].tolist()
        ends = self.columns["social_proof_offsets"][rows + 1].tolist()
        first = min(starts, default=0)  # the window's social proof as one list, sliced per candidate
        proof = self.columns["social_proof_user_ids"][first : max(ends, default=0)].tolist()
        heads = [(head, self.columns[head_column(head)][rows].tolist()) for head in self.heads]
        return [
            Candidate(
                tweet_id,
                author_id,
                created,
                score,
                bool(in_network),
                source_names(bits),
                tuple(proof[start - first : end - first]) if end > start else (),
                {head: values[j] for head, values in heads} if heads else {},
                rank,
            )
            for j, (tweet_id, author_id, created, score, in_network, bits, start, end, rank) in enumerate(
                zip(
                    c["tweet_id"],
                    c["author_id"],
                    c["created_at_ms"],
                    self.scores[positions].tolist(),
                    c["is_in_network"],
                    c["sources"],
                    starts,
                    ends,
                    c["rank"],
                )
            )
        ]


class TweetColumns(Mapping[str, np.ndarray]):
    """The columns the filters read of a window of candidates whose metadata is `tweets` (as
    `Store.tweets` returns it: a tweet deleted, or that never existed, is not there): `tweet_id`,
    `author_id` (-1 where not there), `exists`, `is_nsfw` and `retweet_of` (0: not a retweet), each
    but the first made when a filter first reads it (most filters need only a few)."""

    def __init__(self, tweet_ids: list[int], tweets: dict[int, dict]):
        self._found = [tweets.get(t) for t in tweet_ids]
        self._columns: dict[str, np.ndarray] = {"tweet_id": np.array(tweet_ids, dtype=np.int64)}

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = self._column(name)
        return column

    def _column(self, name: str) -> np.ndarray:
        found = self._found
        if name == "author_id":
            return np.array([t["author_id"] if t else -1 for t in found], dtype=np.int64)
        if name == "exists":
            return np.array([t is not None for t in found], dtype=bool)
        if name == "is_nsfw":
            return np.array([bool(t and t["is_nsfw"]) for t in found], dtype=bool)
        if name == "retweet_of":
            return np.array([(t["retweet_of_tweet_id"] or 0) if t else 0 for t in found], dtype=np.int64)
        raise KeyError(name)

    def __iter__(self):
        return iter(_TWEET_COLUMNS)

    def __len__(self) -> int:
        return len(_TWEET_COLUMNS)


_TWEET_COLUMNS = ("tweet_id", "author_id", "exists", "is_nsfw", "retweet_of")
