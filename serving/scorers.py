"""For You's request-time scorer: the batch heavy score rescaled by what the build could not know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from core.feed_heuristics import FeedHeuristics, apply_multiplier, author_diversity_multipliers
from serving.components import Columns


@dataclass(frozen=True)
class RerankConfig:
    heuristics: FeedHeuristics = FeedHeuristics()
    age_half_life_hours: float = 48.0  # request-time decay: score × max(floor, 0.5 ** (age / half-life))
    age_decay_floor: float = 0.5


@dataclass(frozen=True)
class LightRerankScorer:
    """The heavy score times the out-of-network and reply factors, the filters' discount (feedback
    fatigue) and an age decay, then author diversity recomputed over the candidates that survived
    the filters, all with the batch heuristics' own code (`core.feed_heuristics`)."""

    identifier: ClassVar[str] = "light_rerank"
    config: RerankConfig = RerankConfig()

    def score(self, columns: Columns, rows: np.ndarray, discount: np.ndarray, *, now_ms: float) -> np.ndarray:
        if len(rows) == 0:
            return np.empty(0)
        h, config = self.config.heuristics, self.config
        in_network = columns["is_in_network"][rows].astype(bool)
        is_reply = columns["is_reply"][rows].astype(bool)
        age_hours = np.maximum(now_ms - columns["created_at_ms"][rows], 0) / 3_600_000
        decay = np.maximum(config.age_decay_floor, 0.5 ** (age_hours / config.age_half_life_hours))
        penalty = (
            np.where(in_network, 1.0, h.out_of_network_scale)
            * np.where(is_reply, h.reply_scale, 1.0)
            * discount
            * decay
        )
        score = apply_multiplier(columns["heavy_score"][rows], penalty)
        return apply_multiplier(score, author_diversity_multipliers(columns["author_id"][rows], score, h))
