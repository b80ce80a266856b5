"""The model registry: numbered versions written atomically, promotion only when not worse,
feature fingerprints that refuse a model trained on other features, artifacts checked by sha256."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pytest

from features.registry import FEATURES, registry_hash
from models.registry import (
    MODELS_DIRNAME,
    ArtifactChanged,
    FeatureHashMismatch,
    ModelRegistry,
    feature_hash,
)

NAME = "heavy_ranker"
TWO = (FEATURES[0].qualified_name, FEATURES[-1].qualified_name)
CRITERIA = {"validation_logloss": "min", "validation_auc_like": "max"}
BOOSTER = b'{"trees": [1, 2, 3]}'


def write_booster(content: bytes = BOOSTER):
    def write(folder: Path) -> None:
        (folder / "booster.json").write_bytes(content)
        (folder / "calibration").mkdir()
        (folder / "calibration" / "table.csv").write_text("bucket,p\n0,0.1\n")

    return write


def register(registry: ModelRegistry, *, logloss: float = 0.33, auc: float = 0.70, feature_names=TWO, **kwargs):
    return registry.register(
        NAME,
        write_artifacts=kwargs.pop("write_artifacts", write_booster()),
        feature_names=feature_names,
        training_window={"start": date(2024, 1, 1), "end": date(2024, 1, 5)},
        metrics={"validation_logloss": logloss, "validation_auc_like": auc, "train_rows": 1000},
        seed=kwargs.pop("seed", 7),
        **kwargs,
    )


def by_hand(*qualified_names: str) -> str:
    """The expected fingerprint, computed here without the module's code."""
    rows = []
    for qualified in qualified_names:
        f = next(f for f in FEATURES if f"{f.entity}__{f.name}" == qualified)
        rows.append([f.asset, f.entity, f.name, f.dtype, f.default])
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry.under(tmp_path / "warehouse")


def current_pointer(registry: ModelRegistry) -> dict:
    return json.loads((registry.root / NAME / "CURRENT").read_text())


def promotion_lines(registry: ModelRegistry) -> list[dict]:
    return [json.loads(line) for line in (registry.root / NAME / "promotions.jsonl").read_text().splitlines()]


# --- feature hash -------------------------------------------------------------------------------------


def test_feature_hash_is_sha256_of_the_named_declarations_in_order():
    a, b = TWO
    assert feature_hash([a, b]) == by_hand(a, b)
    assert feature_hash([b, a]) == by_hand(b, a)
    assert feature_hash([a, b]) != feature_hash([b, a])
    # Not the whole-registry hash, and a subset differs from the pair.
    assert feature_hash([a, b]) != registry_hash()
    assert feature_hash([a]) != feature_hash([a, b])


def test_feature_hash_changes_when_a_declaration_changes():
    from dataclasses import replace

    a, b = TWO
    changed = tuple(replace(f, default=1.0) if f.qualified_name == a else f for f in FEATURES)
    assert feature_hash([a, b], changed) != feature_hash([a, b])
    # The description is not part of what a model depends on.
    reworded = tuple(replace(f, description="other words") for f in FEATURES)
    assert feature_hash([a, b], reworded) == feature_hash([a, b])


def test_unknown_or_repeated_features_are_refused(registry):
    with pytest.raises(ValueError, match="user__no_such_feature"):
        feature_hash([TWO[0], "user__no_such_feature"])
    with pytest.raises(ValueError, match="more than once"):
        feature_hash([TWO[0], TWO[0]])
    with pytest.raises(ValueError, match="user__no_such_feature"):
        register(registry, feature_names=["user__no_such_feature"])
    assert registry.versions(NAME) == []


# --- versions and manifest ----------------------------------------------------------------------------


def test_versions_are_numbered_from_one(registry, tmp_path):
    made = [register(registry, seed=s) for s in (1, 2, 3)]
    assert [m.version for m in made] == [1, 2, 3]
    assert registry.root == tmp_path / "warehouse" / MODELS_DIRNAME
    assert all(m.name == NAME for m in made)
    assert [m.path for m in made] == [registry.root / NAME / f"v000{n}" for n in (1, 2, 3)]
    assert [(v.version, v.manifest["seed"]) for v in registry.versions(NAME)] == [(1, 1), (2, 2), (3, 3)]
    assert registry.get(NAME, 2).manifest["seed"] == 2
    assert registry.versions("other_model") == []
    with pytest.raises(LookupError, match="no version 9"):
        registry.get(NAME, 9)


def test_manifest_holds_what_the_model_was_trained_on(registry):
    version = register(registry, params={"eta": 0.1}, extra={"note": "baseline"})
    on_disk = json.loads((registry.root / NAME / "v0001" / "manifest.json").read_text())
    assert on_disk == version.manifest
    assert on_disk["name"] == NAME and on_disk["version"] == 1 and on_disk["seed"] == 7
    assert on_disk["feature_names"] == list(TWO)
    assert on_disk["feature_hash"] == by_hand(*TWO)
    assert on_disk["registry_hash"] == registry_hash()
    assert on_disk["training_window"] == {"start": "2024-01-01", "end": "2024-01-05"}
    assert on_disk["metrics"]["validation_logloss"] == 0.33
    assert on_disk["params"] == {"eta": 0.1} and on_disk["extra"] == {"note": "baseline"}
    assert on_disk["created_at"].endswith("+00:00")
    artifacts = {a["filename"]: a for a in on_disk["artifacts"]}
    assert set(artifacts) == {"booster.json", "calibration/table.csv"}
    assert artifacts["booster.json"] == {
        "filename": "booster.json",
        "sha256": hashlib.sha256(BOOSTER).hexdigest(),
        "size": len(BOOSTER),
    }
    assert version.feature_names == TWO and version.feature_hash == by_hand(*TWO)
    assert version.metrics["validation_auc_like"] == 0.70
    assert version.artifact("booster.json").read_bytes() == BOOSTER
    with pytest.raises(FileNotFoundError, match="model.bin"):
        version.artifact("model.bin")


def test_failed_training_leaves_no_version(registry):
    register(registry)

    def crash(folder: Path) -> None:
        (folder / "booster.json").write_bytes(b"half")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        register(registry, write_artifacts=crash)
    assert [v.version for v in registry.versions(NAME)] == [1]
    assert sorted(p.name for p in (registry.root / NAME).iterdir()) == ["v0001"]
    assert register(registry).version == 2


def test_a_leftover_staging_folder_is_not_a_version(registry):
    register(registry)
    (registry.root / NAME / ".incoming-crashed").mkdir()
    assert [v.version for v in registry.versions(NAME)] == [1]
    assert register(registry).version == 2


def test_verify_detects_a_changed_artifact(registry):
    version = register(registry)
    version.verify()
    (version.path / "booster.json").write_bytes(b'{"trees": [9]}')
    with pytest.raises(ArtifactChanged, match="booster.json"):
        version.verify()
    (version.path / "booster.json").write_bytes(BOOSTER)
    version.verify()
    (version.path / "calibration" / "table.csv").unlink()
    with pytest.raises(ArtifactChanged, match="missing"):
        version.verify()


# --- promotion ----------------------------------------------------------------------------------------


def test_first_model_is_promoted(registry):
    register(registry)
    assert registry.current(NAME) is None
    decision = registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    assert decision.promoted and decision.version == 1 and decision.previous_version is None
    assert decision.reason == "first model"
    assert registry.current(NAME).version == 1
    assert current_pointer(registry)["version"] == 1


def test_better_is_promoted_worse_is_not(registry):
    register(registry, logloss=0.33, auc=0.70)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    register(registry, logloss=0.31, auc=0.72)
    better = registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA)
    assert better.promoted and better.previous_version == 1
    assert "validation_logloss 0.31 <= 0.33 of v1" in better.reason
    assert better.compared["validation_logloss"] == {"candidate": 0.31, "current": 0.33}
    assert registry.current(NAME).version == 2

    register(registry, logloss=0.40, auc=0.60)
    pointer_before = current_pointer(registry)
    worse = registry.promote_if_not_worse(NAME, 3, criteria=CRITERIA)
    assert not worse.promoted and worse.previous_version == 2
    assert "validation_logloss 0.4 worse than 0.31 of v2" in worse.reason
    assert current_pointer(registry) == pointer_before
    assert registry.current(NAME).version == 2


def test_a_tie_is_promoted(registry):
    register(registry, logloss=0.33, auc=0.70)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    register(registry, logloss=0.33, auc=0.70)
    assert registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA).promoted
    assert registry.current(NAME).version == 2


def test_mixed_criteria_are_not_promoted(registry):
    register(registry, logloss=0.33, auc=0.70)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    register(registry, logloss=0.30, auc=0.65)  # better logloss, worse AUC
    decision = registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA)
    assert not decision.promoted
    assert "validation_auc_like 0.65 worse than 0.7 of v1" in decision.reason
    assert registry.current(NAME).version == 1


def test_tolerance_allows_tiny_regressions_only(registry):
    register(registry, logloss=0.330, auc=0.70)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    register(registry, logloss=0.335, auc=0.70)
    assert not registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA).promoted
    assert registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA, tolerance=0.01).promoted
    assert registry.current(NAME).version == 2
    register(registry, logloss=0.36, auc=0.70)
    assert not registry.promote_if_not_worse(NAME, 3, criteria=CRITERIA, tolerance=0.01).promoted
    # The tolerance applies downwards to a "max" metric.
    register(registry, logloss=0.335, auc=0.695)
    assert not registry.promote_if_not_worse(NAME, 4, criteria=CRITERIA).promoted
    assert registry.promote_if_not_worse(NAME, 4, criteria=CRITERIA, tolerance=0.01).promoted
    register(registry, logloss=0.335, auc=0.68)
    assert not registry.promote_if_not_worse(NAME, 5, criteria=CRITERIA, tolerance=0.01).promoted


def test_a_nan_candidate_is_never_promoted(registry):
    register(registry)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    register(registry, logloss=float("nan"))
    assert not registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA).promoted
    # A metric that could not be computed is stored as null (JSON has no NaN) and counts as NaN.
    register(registry, logloss=None)
    assert not registry.promote_if_not_worse(NAME, 3, criteria=CRITERIA).promoted


def test_a_metric_the_current_model_lacks_is_noted_and_not_held_against(registry):
    registry.register(
        NAME,
        write_artifacts=write_booster(),
        feature_names=TWO,
        training_window={},
        metrics={"validation_logloss": 0.30},
        seed=1,
    )
    registry.promote_if_not_worse(NAME, 1, criteria={"validation_logloss": "min"})
    registry.register(
        NAME,
        write_artifacts=write_booster(),
        feature_names=TWO,
        training_window={},
        metrics={"validation_logloss": 0.30, "recall": 0.2},
        seed=1,
    )
    decision = registry.promote_if_not_worse(NAME, 2, criteria={"validation_logloss": "min", "recall": "max"})
    assert decision.promoted
    assert "v1 has no recall" in decision.reason
    assert decision.compared["recall"] == {"candidate": 0.2, "current": None}
    # A criterion the current model lacks does not excuse one that is worse.
    registry.register(
        NAME,
        write_artifacts=write_booster(),
        feature_names=TWO,
        training_window={},
        metrics={"validation_logloss": 0.35, "recall": 0.3, "ndcg": 0.5},
        seed=1,
    )
    assert not registry.promote_if_not_worse(NAME, 3, criteria={"validation_logloss": "min", "ndcg": "max"}).promoted


def test_candidate_missing_a_criterion_or_bad_criteria_raise(registry):
    register(registry)
    with pytest.raises(ValueError, match="validation_ndcg"):
        registry.promote_if_not_worse(NAME, 1, criteria={"validation_ndcg": "max"})
    with pytest.raises(ValueError, match="min"):
        registry.promote_if_not_worse(NAME, 1, criteria={"validation_logloss": "lower"})
    assert registry.current(NAME) is None


def test_every_decision_is_appended_to_the_history(registry):
    register(registry, logloss=0.33)
    register(registry, logloss=0.40)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    registry.promote_if_not_worse(NAME, 2, criteria=CRITERIA)
    lines = promotion_lines(registry)
    assert [(line["version"], line["promoted"], line["previous_version"]) for line in lines] == [
        (1, True, None),
        (2, False, 1),
    ]
    assert lines[0]["reason"] == "first model"
    assert lines[1]["compared"]["validation_logloss"] == {"candidate": 0.40, "current": 0.33}
    assert all(line["name"] == NAME and not line["forced"] for line in lines)


def test_forced_promotion_overrides_metrics(registry):
    register(registry, logloss=0.33)
    register(registry, logloss=0.40)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    registry.promote(NAME, 2, reason="rollback of a bad feature fix")
    assert registry.current(NAME).version == 2
    assert current_pointer(registry)["reason"] == "rollback of a bad feature fix"
    last = promotion_lines(registry)[-1]
    assert last["forced"] and last["version"] == 2 and last["previous_version"] == 1
    with pytest.raises(LookupError):
        registry.promote(NAME, 7, reason="no such version")
    assert registry.current(NAME).version == 2


# --- loading for serving ------------------------------------------------------------------------------


def test_load_current_checked_refuses_other_features(registry):
    with pytest.raises(LookupError, match="no promoted heavy_ranker model"):
        registry.load_current_checked(NAME, expected_hash=by_hand(*TWO))
    register(registry)
    registry.promote_if_not_worse(NAME, 1, criteria=CRITERIA)
    assert registry.load_current_checked(NAME, expected_hash=by_hand(*TWO)).version == 1
    reordered = by_hand(*reversed(TWO))
    with pytest.raises(FeatureHashMismatch) as raised:
        registry.load_current_checked(NAME, expected_hash=reordered)
    message = str(raised.value)
    assert "heavy_ranker v1" in message and reordered in message and by_hand(*TWO) in message
    assert "Retrain" in message
