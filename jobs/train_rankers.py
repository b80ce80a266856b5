"""Training the light and heavy rankers on `training_examples` and registering them.

Both train on the `train` split and stop early on `validation`; their validation metrics decide
promotion in the model registry (`models.registry`): a new version serves only when it is not
worse than the current one. The `test` split is scored and reported, never used for a decision.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.delta_commits import last_commit_metadata
from core.graph_eval import roc_auc
from core.heads import HEADS
from core.storage import is_delta_table, models_root
from models.heavy_ranker import (
    HeavyRanker,
    HeavyRankerConfig,
    RankerInputs,
    log_loss,
    train_heavy_ranker,
)
from models.light_ranker import LightRanker, LightRankerConfig, train_light_ranker
from models.ranker_features import (
    HEAVY_RANKER_FEATURES,
    LIGHT_RANKER_FEATURES,
    any_positive,
    feature_matrix,
    label_matrix,
)
from models.registry import HEAVY_RANKER, LIGHT_RANKER, ModelRegistry, PromotionDecision, feature_hash

LIGHT_PROMOTION = {"validation_auc": "max", "validation_logloss": "min"}
HEAVY_PROMOTION = {"validation_logloss": "min"}
TRAIN_HINT = "`homefeed run --select key:rankers` (after `homefeed training-set`)"


def read_training_examples(tables_dir: Path) -> tuple[pa.Table, dict]:
    """The table and its Delta commit metadata (window, representations, registry hash)."""
    from deltalake import DeltaTable

    path = tables_dir / "training_examples"
    if not is_delta_table(path):
        raise FileNotFoundError(f"{path} does not exist: build the training set first (homefeed training-set)")
    columns = ["user_id", "tweet_id", "author_id", "impression_time", "split", *HEADS, *HEAVY_RANKER_FEATURES]
    return DeltaTable(str(path)).to_pyarrow_table(columns=list(dict.fromkeys(columns))), last_commit_metadata(path)


def split_of(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["split"], name))


def ranker_inputs(table: pa.Table, feature_names=HEAVY_RANKER_FEATURES, *, labels: bool = True) -> RankerInputs:
    return RankerInputs(
        dense=feature_matrix(table, feature_names),
        user_ids=table["user_id"].to_numpy(),
        author_ids=table["author_id"].to_numpy(),
        labels=label_matrix(table) if labels else None,
    )


def head_metrics(model: HeavyRanker, inputs: RankerInputs) -> dict[str, dict[str, float]]:
    """Per head: AUC and log loss of the calibrated probabilities, positives and rows."""
    probabilities = model.probabilities(inputs)
    return {
        head: {
            "auc": roc_auc(inputs.labels[:, j], probabilities[:, j]),
            "logloss": log_loss(probabilities[:, j], inputs.labels[:, j]),
            "positives": int(inputs.labels[:, j].sum()),
            "rows": len(inputs),
        }
        for j, head in enumerate(model.heads)
    }


def finite_metric(value: float | None) -> float | None:
    """A metric rounded for JSON, or None where it could not be computed (NaN, e.g. an AUC on one class)."""
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def train_light(table: pa.Table, config: LightRankerConfig) -> tuple[LightRanker, dict]:
    train, validation, test = (split_of(table, s) for s in ("train", "validation", "test"))
    model = train_light_ranker(
        feature_matrix(train, LIGHT_RANKER_FEATURES),
        any_positive(train),
        feature_matrix(validation, LIGHT_RANKER_FEATURES),
        any_positive(validation),
        feature_names=LIGHT_RANKER_FEATURES,
        config=config,
    )
    metrics = {}
    for name, split in (("validation", validation), ("test", test)):
        if split.num_rows:
            scores, labels = model.predict(feature_matrix(split, LIGHT_RANKER_FEATURES)), any_positive(split)
            metrics[f"{name}_auc"] = finite_metric(roc_auc(labels, scores))
            metrics[f"{name}_logloss"] = finite_metric(log_loss(scores, labels))
    metrics["best_iteration"] = model.best_iteration
    return model, metrics


def train_heavy(table: pa.Table, config: HeavyRankerConfig) -> tuple[HeavyRanker, dict]:
    train, validation, test = (ranker_inputs(split_of(table, s)) for s in ("train", "validation", "test"))
    model = train_heavy_ranker(train, validation, feature_names=HEAVY_RANKER_FEATURES, config=config)
    metrics: dict = {"epochs": len(model.history)}
    for name, inputs in (("validation", validation), ("test", test)):
        if len(inputs):
            per_head = head_metrics(model, inputs)
            metrics[f"{name}_logloss"] = finite_metric(float(np.mean([m["logloss"] for m in per_head.values()])))
            for head, m in per_head.items():
                metrics[f"{name}_auc_{head}"] = finite_metric(m["auc"])
                metrics[f"{name}_logloss_{head}"] = finite_metric(m["logloss"])
    return model, metrics


def _register(
    registry: ModelRegistry, name: str, model, *, metrics: dict, metadata: dict, seed: int, params: dict, criteria: dict
) -> tuple[int, PromotionDecision]:
    version = registry.register(
        name,
        write_artifacts=model.save,
        feature_names=model.feature_names,
        training_window=metadata.get("window", {}),
        metrics=metrics,
        seed=seed,
        params=params,
        extra={
            "training_set_registry_hash": metadata.get("registry_hash"),
            "representations_as_of": metadata.get("representations_as_of"),
        },
    )
    return version.version, registry.promote_if_not_worse(name, version.version, criteria=criteria)


def train_rankers(
    warehouse: Path,
    *,
    models_dir: Path | None = None,
    light_config: LightRankerConfig = LightRankerConfig(),
    heavy_config: HeavyRankerConfig = HeavyRankerConfig(),
    examples: tuple[pa.Table, dict] | None = None,
) -> dict:
    """Train both rankers on `<warehouse>/tables/training_examples` (or `examples`, that table and its
    metadata as `read_training_examples` returns them), register them in `models_dir` (default
    `<warehouse>/models`), promote each if not worse than the current one; returns a summary
    (versions, metrics, decisions)."""
    table, metadata = examples or read_training_examples(warehouse.resolve() / "tables")
    registry = ModelRegistry(models_root(warehouse, models_dir))
    summary: dict = {"training_window": metadata.get("window"), "rows": table.num_rows, "models": {}}
    for name, train, config, criteria in (
        (LIGHT_RANKER, train_light, light_config, LIGHT_PROMOTION),
        (HEAVY_RANKER, train_heavy, heavy_config, HEAVY_PROMOTION),
    ):
        model, metrics = train(table, config)
        version, decision = _register(
            registry,
            name,
            model,
            metrics=metrics,
            metadata=metadata,
            seed=config.seed,
            params=asdict(config),
            criteria=criteria,
        )
        summary["models"][name] = {
            "version": version,
            "promoted": decision.promoted,
            "reason": decision.reason,
            "metrics": metrics,
            "feature_hash": feature_hash(model.feature_names),
        }
    return summary


def current_models(warehouse: Path, *, models_dir: Path | None = None) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """{name: (artifact directory, feature names)} of the promoted light and heavy rankers in
    `models_dir` (default `<warehouse>/models`), each checked against the feature hash of the
    features this code would feed it."""
    registry = ModelRegistry(models_root(warehouse, models_dir))
    out = {}
    for name, features in ((LIGHT_RANKER, LIGHT_RANKER_FEATURES), (HEAVY_RANKER, HEAVY_RANKER_FEATURES)):
        version = registry.load_current_checked(name, expected_hash=feature_hash(features), train_hint=TRAIN_HINT)
        version.verify()
        out[name] = (version.path, version.feature_names)
    return out
