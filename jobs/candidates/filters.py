"""The viewer filters the batch applies to every merged candidate, named as `core.filters` names
them, in the order they are checked (CANDIDATE_FILTERS, cheapest first).

Each filter says which candidates it removes; `first_failed` tags a candidate with the first one
that removes it, so every dropped candidate has one reason.
"""

from __future__ import annotations

import numpy as np

from core.filters import BLOCKED_MUTED, CANDIDATE_FILTERS, SEEN, SELF
from jobs.candidates.blocks import RequestBlock
from jobs.candidates.config import CandidatesConfig
from jobs.candidates.indexes import TweetTable
from jobs.candidates.kernels import pairs_in


def self_tweets(block: RequestBlock, user_rows: np.ndarray, author_ids: np.ndarray) -> np.ndarray:
    """The viewer's own tweets."""
    return block.user_ids[user_rows] == author_ids


def blocked_muted_authors(block: RequestBlock, user_rows: np.ndarray, author_ids: np.ndarray) -> np.ndarray:
    """Tweets of authors the viewer blocked or muted (`hidden_author_ids`)."""
    return pairs_in(user_rows, author_ids, block.hidden.rows, block.hidden.values)


def seen_tweets(block: RequestBlock, user_rows: np.ndarray, cols: np.ndarray, tweets: TweetTable) -> np.ndarray:
    """Tweets the viewer already saw or engaged with (`seen_tweet_ids`)."""
    seen_cols, seen_found = tweets.columns_of(block.seen.values)
    return pairs_in(user_rows, cols, block.seen.rows[seen_found], seen_cols)


def viewer_filters(
    block: RequestBlock, user_rows: np.ndarray, cols: np.ndarray, tweets: TweetTable, config: CandidatesConfig
) -> dict[str, np.ndarray]:
    """For each name of CANDIDATE_FILTERS, which candidates (user_rows[i], cols[i]) it removes
    (`seen` removes nothing unless `config.exclude_seen`)."""
    author_ids = tweets.author_ids[cols]
    return {
        SELF: self_tweets(block, user_rows, author_ids),
        BLOCKED_MUTED: blocked_muted_authors(block, user_rows, author_ids),
        SEEN: seen_tweets(block, user_rows, cols, tweets)
        if config.exclude_seen
        else np.zeros(user_rows.shape[0], dtype=bool),
    }


def first_failed(removed: dict[str, np.ndarray], candidates: int) -> np.ndarray:
    """Per candidate, 0 when no filter removes it, else 1 + the position in CANDIDATE_FILTERS of the
    first filter that does."""
    reason = np.zeros(candidates, dtype=np.int64)
    for code, name in enumerate(CANDIDATE_FILTERS, start=1):
        reason[(reason == 0) & removed[name]] = code
    return reason
