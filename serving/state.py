"""What one API process holds while it serves (`app.state.serving`, made by the app's lifespan):
the store over its Redis client, the caches, the metrics and the configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serving.for_you import ForYouConfig
from serving.metrics import ServingMetrics
from serving.page_cache import RecentPages
from serving.store import PublishedCache, Store


@dataclass
class ServingState:
    store: Store  # the Redis client's reads (`store.client`)
    secret: str  # signs tokens and cursors
    pages: RecentPages  # home timeline pages served again (`serving.page_cache`)
    config: ForYouConfig = ForYouConfig()
    clock: Callable[[], float] = time.time  # epoch seconds
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    rendered: PublishedCache = field(default_factory=PublishedCache)  # each tweet's viewer-independent fields
