"""Small light and heavy rankers trained on seeded random data and promoted, so `ranked_feeds` can
run without a training set: the test suite's ranked build and `benchmarks/cluster_check.py` use them
(their scores are arbitrary but the same on every run)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.heavy_ranker import HeavyRanker, HeavyRankerConfig, RankerInputs, train_heavy_ranker
from models.light_ranker import LightRankerConfig, train_light_ranker
from models.ranker_features import HEAVY_RANKER_FEATURES, LIGHT_RANKER_FEATURES
from models.registry import HEAVY_RANKER, LIGHT_RANKER, ModelRegistry


def register_fixed_rankers(
    warehouse: Path, *, heavy_features: Sequence[str] = HEAVY_RANKER_FEATURES, reason: str = "fixed models"
) -> HeavyRanker:
    """Train both rankers (seed 0, one epoch / five rounds on 300 random rows), register and promote
    them in `warehouse`'s registry; the heavy ranker."""
    rng = np.random.default_rng(0)
    heavy_features = list(heavy_features)

    def inputs(rows: int) -> RankerInputs:
        return RankerInputs(
            dense=rng.normal(size=(rows, len(heavy_features))).astype(np.float32),
            user_ids=rng.integers(1, 9, rows),
            author_ids=rng.integers(1, 9, rows),
            labels=(rng.random((rows, 9)) < 0.2).astype(np.float32),
        )

    heavy = train_heavy_ranker(
        inputs(300),
        inputs(100),
        feature_names=heavy_features,
        config=HeavyRankerConfig(bottom_sizes=(8,), tower_size=4, max_epochs=1),
    )
    dense = rng.normal(size=(300, len(LIGHT_RANKER_FEATURES))).astype(np.float32)
    light = train_light_ranker(
        dense[:200],
        (rng.random(200) < 0.3).astype(np.float32),
        dense[200:],
        (rng.random(100) < 0.3).astype(np.float32),
        feature_names=LIGHT_RANKER_FEATURES,
        config=LightRankerConfig(max_rounds=5),
    )
    registry = ModelRegistry.under(warehouse)
    for name, model in ((LIGHT_RANKER, light), (HEAVY_RANKER, heavy)):
        version = registry.register(
            name,
            write_artifacts=model.save,
            feature_names=model.feature_names,
            training_window={},
            metrics={"validation_logloss": 1.0},
            seed=0,
        )
        registry.promote(name, version.version, reason=reason)
    return heavy
