"""Recently computed home timeline pages (For You, Following), served again while nothing they
were computed from has changed.

A page is a function of the published version (immutable once current), the cursor and count,
the viewer's request-time state as read from Redis (blocks, mutes, follows, impressions, "not
interested", the who-to-follow mark, the feed value itself, who posted since the build), the
deletions this process has seen, the followees' tweets posted since the build, and, for For You,
the clock (the age decay and the fatigue recovery). The API keys a page by all of these but the
clock, which `RecentPages` bounds instead: an entry is served for `ttl_seconds` after it was
computed, so a page served from it scores its tweets' ages as of at most that long ago. Any event
of the viewer's, a followee's new tweet or any deletion changes the key, so a page served again
never shows what a request-time filter would now remove. As Home Mixer keeps its scored
candidates for a few minutes, this keeps a refresh, a retry or a client polling the first page
from costing a pipeline run each; the first page after an impression or any other event is
always computed afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CachedPage:
    body: bytes  # the response body as first served
    filtered: dict[str, int] = field(default_factory=dict)  # filter -> candidates removed on the page
    fallback_reason: str | None = None
    shows_who_to_follow: bool = False  # serving it again marks the module shown again


class RecentPages:
    """At most `max_entries` pages, each for `ttl_seconds` after it was put (0: nothing is kept);
    past the bound the oldest go first, and each put drops those that expired."""

    def __init__(self, ttl_seconds: float, max_entries: int, *, clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds, self.max_entries, self.clock = ttl_seconds, max_entries, clock
        self._pages: dict[Hashable, tuple[float, CachedPage]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Hashable) -> CachedPage | None:
        found = self._pages.get(key)
        if found is None:
            return None
        computed_at, page = found
        if self.clock() - computed_at >= self.ttl_seconds:
            del self._pages[key]
            return None
        return page

    def put(self, key: Hashable, page: CachedPage) -> None:
        if not self.enabled:
            return
        now = self.clock()
        self._pages.pop(key, None)  # re-inserted at the end: the entries stay in the order they were put
        self._pages[key] = (now, page)
        while len(self._pages) > self.max_entries:
            del self._pages[next(iter(self._pages))]
        while True:  # the expired ones, oldest first: memory follows the pages of the last period
            oldest = next(iter(self._pages))
            if now - self._pages[oldest][0] < self.ttl_seconds:
                break
            del self._pages[oldest]
