"""The light ranker: a small xgboost model over cheap features (`LIGHT_RANKER_FEATURES`)
predicting any positive engagement, used to cut each candidate pool before the heavy ranker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MODEL_FILE, SPEC_FILE = "light_ranker.ubj", "light_ranker.json"


@dataclass(frozen=True)
class LightRankerConfig:
    max_depth: int = 5
    learning_rate: float = 0.1
    max_rounds: int = 300
    early_stopping_rounds: int = 20
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    seed: int = 0
    nthread: int = 2

    def __post_init__(self) -> None:
        if self.max_depth < 1 or self.max_rounds < 1 or self.early_stopping_rounds < 1:
            raise ValueError("max_depth, max_rounds and early_stopping_rounds must be at least 1")
        if not (0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1):
            raise ValueError("subsample and colsample_bytree must be in (0, 1]")

    def xgb_params(self) -> dict:
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "seed": self.seed,
            "nthread": self.nthread,
        }


@dataclass
class LightRanker:
    feature_names: tuple[str, ...]
    booster: object  # xgboost.Booster
    best_iteration: int
    config: LightRankerConfig = field(default_factory=LightRankerConfig)

    def predict(self, dense: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        matrix = xgb.DMatrix(dense, feature_names=list(self.feature_names))
        return self.booster.predict(matrix, iteration_range=(0, self.best_iteration + 1)).astype(np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        (directory / SPEC_FILE).write_text(
            json.dumps(
                {
                    "feature_names": list(self.feature_names),
                    "best_iteration": self.best_iteration,
                    "config": asdict(self.config),
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, directory: Path) -> LightRanker:
        import xgboost as xgb

        spec = json.loads((directory / SPEC_FILE).read_text())
        booster = xgb.Booster()
        booster.load_model(str(directory / MODEL_FILE))
        booster.set_param({"nthread": 1})  # scoring runs one per Spark task
        return cls(
            feature_names=tuple(spec["feature_names"]),
            booster=booster,
            best_iteration=int(spec["best_iteration"]),
            config=LightRankerConfig(**spec["config"]),
        )


def train_light_ranker(
    train_dense: np.ndarray,
    train_labels: np.ndarray,
    validation_dense: np.ndarray,
    validation_labels: np.ndarray,
    *,
    feature_names: Sequence[str],
    config: LightRankerConfig = LightRankerConfig(),
) -> LightRanker:
    """Boost on the training split, stopping on the validation log loss."""
    import xgboost as xgb

    if len(train_dense) == 0 or len(validation_dense) == 0:
        raise ValueError("the light ranker needs training and validation rows")
    names = list(feature_names)
    train = xgb.DMatrix(train_dense, label=train_labels, feature_names=names)
    validation = xgb.DMatrix(validation_dense, label=validation_labels, feature_names=names)
    booster = xgb.train(
        config.xgb_params(),
        train,
        num_boost_round=config.max_rounds,
        evals=[(validation, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    return LightRanker(
        feature_names=tuple(names), booster=booster, best_iteration=int(booster.best_iteration), config=config
    )
