"""The request pipelines' components, as Twitter's product-mixer declares them: small classes, each
with a stable `identifier` (the metric label, the key of a page's `filtered` counts, the explain
page's filter column), satisfying one of the protocols below; a pipeline lists them in the order
they run (`serving.for_you.FOR_YOU`, `serving.timelines.CHRONOLOGICAL`).

Candidates travel as columns, one numpy array per field and one row per candidate (`Columns`: the
feed's columns, those of chronological candidates, or those of the tweets a page window read,
`serving.candidates.TweetColumns`), so that a filter is a few array operations over all of them. A
filter returns what it removed (a `FilterResult`); the pipeline that ran it keeps the ids each
filter removed (`run_filters`, `Filtered.removed_ids`): no component changes what another holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, NamedTuple, Protocol

import numpy as np

from core.feed_heuristics import FeedHeuristics
from serving.store import UserState

Columns = Mapping[str, np.ndarray]  # the candidates' fields: tweet_id and author_id at least
Removed = dict[str, list[int]]  # filter identifier -> the tweet ids it removed, in the candidates' order


@dataclass(frozen=True)
class FilterQuery:
    """What the filters read of a request: the viewer's state, the time (feedback fatigue recovers
    with it), the heuristics' fatigue window, and the ids already on the page or an earlier one of
    the session (`shown`, the duplicate filter's), which the pipeline grows as the page fills."""

    state: UserState
    now_ms: float = 0.0
    heuristics: FeedHeuristics = FeedHeuristics()
    shown: Set[int] = frozenset()


class FilterResult(NamedTuple):  # a tuple: one is made per filter per window of candidates
    removed: np.ndarray  # bool mask over the candidates: removed by this filter (a subset of those alive)
    discount: np.ndarray | None = None  # score multiplier of each candidate kept, where the filter discounts


class Filter(Protocol):
    identifier: ClassVar[str]  # a name of `core.filters`

    def apply(self, query: FilterQuery, columns: Columns, alive: np.ndarray) -> FilterResult:
        """Which of the candidates `alive` (a bool mask) this filter removes."""
        ...


class CandidateSource(Protocol):
    identifier: ClassVar[str]  # the name `ForYouConfig.sources` declares it by; its failures' label


class Scorer(Protocol):
    identifier: ClassVar[str]

    def score(self, columns: Columns, rows: np.ndarray, discount: np.ndarray, *, now_ms: float) -> np.ndarray:
        """The request-time score of each of `rows` (indices into the columns)."""
        ...


class Selector(Protocol):
    identifier: ClassVar[str]


class Filtered(NamedTuple):
    """What a run of filters left: the candidates kept (a bool mask), each filter's removals (bool
    masks, in the order the filters ran) and the kept candidates' discount (None: none)."""

    kept: np.ndarray
    removed: list[tuple[str, np.ndarray]]
    discount: np.ndarray | None = None

    def removed_ids(self, columns: Columns, *, before: int | None = None) -> Removed:
        """The tweet ids each filter removed (`before`: among the first `before` candidates only); a
        filter that removed none is left out."""
        removed = [(identifier, mask[:before]) for identifier, mask in self.removed]
        removed = [(identifier, mask) for identifier, mask in removed if mask.any()]
        if not removed:
            return {}
        tweet_ids = columns["tweet_id"][:before]
        return {identifier: tweet_ids[mask].tolist() for identifier, mask in removed}


def run_filters(
    filters: Sequence[Filter], query: FilterQuery, columns: Columns, alive: np.ndarray | None = None
) -> Filtered:
    """`filters` in order over the candidates `alive` (all when None), each over what the earlier
    ones kept."""
    if alive is None:
        alive = _everyone(len(columns["tweet_id"]))
    removed = []
    discount = None
    for component in filters:
        result = component.apply(query, columns, alive)
        alive = alive ^ result.removed  # what it removed is among what was alive
        removed.append((component.identifier, result.removed))
        if result.discount is not None:
            discount = result.discount if discount is None else discount * result.discount
    return Filtered(alive, removed, discount)


@lru_cache(maxsize=256)
def _everyone(count: int) -> np.ndarray:
    """All `count` candidates alive: read-only, so one array serves every run (the filters make new
    masks, never change the one they are given)."""
    alive = np.ones(count, dtype=bool)
    alive.flags.writeable = False
    return alive


def add_removed(removed: Removed, more: Removed) -> None:
    """`more`'s ids appended to `removed`'s, filter by filter (the pipeline's own accumulator)."""
    for identifier, ids in more.items():
        removed.setdefault(identifier, []).extend(ids)
