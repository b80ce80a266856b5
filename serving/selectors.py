"""For You's selectors of its ranked tweets: the serving order (`InNetworkPageAssembly`) and the page
as it fills (`OutOfNetworkRunLimit`). The modules and ads around them are `serving.mixing`'s."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import ClassVar

import numpy as np

from core.feed_heuristics import FeedHeuristics, assemble_pages
from serving.candidates import Candidate
from serving.components import Columns

PageItem = tuple[Candidate, dict]  # a candidate and its tweet's metadata


@dataclass(frozen=True)
class InNetworkPageAssembly:
    """The serving order: by score (ties by tweet id), assembled as the batch assembles pages
    (`core.feed_heuristics.assemble_pages`: in-network and out-of-network caps, at most
    `max_out_of_network_in_a_row` out-of-network tweets in a row)."""

    identifier: ClassVar[str] = "page_assembly"
    heuristics: FeedHeuristics = FeedHeuristics()

    def select(
        self, columns: Columns, rows: np.ndarray, scores: np.ndarray, *, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(the rows in serving order, their scores); `limit`: only the first `limit` of that order
        (the assembly walks one row at a time, and stopping it early leaves the rows before unchanged)."""
        if len(rows) == 0:
            return rows, scores
        order = np.lexsort((columns["tweet_id"][rows], -scores))
        in_network = columns["is_in_network"][rows].astype(bool)[order]
        rows_wanted = len(order) if limit is None else min(limit, len(order))
        picked, _ = assemble_pages(
            np.flatnonzero(in_network).tolist(),
            np.flatnonzero(~in_network).tolist(),
            _one_page_of(self.heuristics, rows_wanted, max(len(order), 1)),
        )
        chosen = order[np.asarray(picked, dtype=np.intp)]
        return rows[chosen], scores[chosen]


@lru_cache(maxsize=4096)
def _one_page_of(heuristics: FeedHeuristics, max_rows: int, page_size: int) -> FeedHeuristics:
    """The heuristics for one page of `page_size` rows cut at `max_rows` (made once per pair: each
    one validates every field)."""
    return replace(heuristics, max_rows=max_rows, page_size=page_size)


@dataclass
class OutOfNetworkRunLimit:
    """A page of `count` filling in serving order. The filters can remove the in-network tweet that
    separated two out-of-network runs, so the run limit is enforced again: an out-of-network tweet
    past `limit` in a row waits for the next in-network one (and follows it), or for the end of the
    candidates (`finish`); one still waiting when the page is full is not on it."""

    identifier: ClassVar[str] = "out_of_network_run_limit"
    count: int
    limit: int
    page: list[PageItem] = field(default_factory=list)
    waiting: list[PageItem] = field(default_factory=list)
    run: int = 0

    @property
    def full(self) -> bool:
        return len(self.page) == self.count

    def take(self, items: list[PageItem]) -> int:
        """Offers `items` in order until the page is full: how many it offered."""
        count, limit, page, waiting = self.count, self.limit, self.page, self.waiting
        for offered, item in enumerate(items, 1):
            if not item[0].is_in_network and self.run >= limit:
                waiting.append(item)
                continue
            self._add(item)
            while waiting and self.run < limit and len(page) < count:
                self._add(waiting.pop(0))
            if len(page) == count:
                return offered
        return len(items)

    def finish(self) -> list[PageItem]:
        """The page, with the tweets still waiting appended while it has room (no in-network
        candidate is left to space them out)."""
        while self.waiting and len(self.page) < self.count:
            self._add(self.waiting.pop(0))
        return self.page

    def _add(self, item: PageItem) -> None:
        self.page.append(item)
        self.run = 0 if item[0].is_in_network else self.run + 1
