"""The model registry: trained models as numbered, immutable versions under `<warehouse>/models`.

Layout, per model name:

    <warehouse>/models/<name>/v0001/manifest.json   what was trained, on what, how well (written last)
    <warehouse>/models/<name>/v0001/<artifacts>     whatever the trainer wrote (booster, weights, ...)
    <warehouse>/models/<name>/CURRENT               {"version", "promoted_at", "reason"}: the served one
    <warehouse>/models/<name>/promotions.jsonl      every promotion decision, one JSON object a line

A version is written into a hidden temporary folder beside the versions and renamed into place in
one step, so a reader never sees a half-written version and a failed training leaves none. Each
manifest carries `feature_hash`, the fingerprint of the registry declarations of the model's input
columns in their order; serving computes the same hash from the features it will feed and refuses a
model trained on anything else (`FeatureHashMismatch`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.storage import MODELS_DIRNAME
from features.registry import FEATURES, Feature, registry_hash

# The two rankers a registry holds (light: candidate pruning; heavy: the multi-task scorer).
LIGHT_RANKER, HEAVY_RANKER = "light_ranker", "heavy_ranker"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
PROMOTIONS = "promotions.jsonl"
DIRECTIONS = ("min", "max")

_VERSION_DIR = re.compile(r"v(\d{4,})")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TEMP_PREFIX = ".incoming-"
_RENAME_ATTEMPTS = 20


class FeatureHashMismatch(RuntimeError):
    """A model was trained on other feature declarations (or another column order) than serving has."""


class ArtifactChanged(RuntimeError):
    """A version's artifact is missing or no longer matches the sha256 and size of its manifest."""


# --- feature fingerprint ----------------------------------------------------------------------------


def feature_hash(feature_names: Sequence[str], features: tuple[Feature, ...] = FEATURES) -> str:
    """sha256 of the registry declarations (asset, entity, name, dtype, default) of exactly the
    named features (`Feature.qualified_name`), in the model's input order: the order is the column
    order of the model input, so reordering the same features changes the hash."""
    if isinstance(feature_names, str):
        raise TypeError("feature_names must be a sequence of feature names, not one string")
    names = list(feature_names)
    if not names:
        raise ValueError("a model needs at least one feature; feature_names is empty")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"features named more than once: {duplicates}")
    by_name = {f.qualified_name: f for f in features}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown features {unknown}: not in the feature registry "
            f"(names are qualified, <entity>__<name>, e.g. {features[0].qualified_name!r})"
        )
    declarations = [
        [by_name[n].asset, by_name[n].entity, by_name[n].name, by_name[n].dtype, by_name[n].default] for n in names
    ]
    return hashlib.sha256(json.dumps(declarations, separators=(",", ":")).encode()).hexdigest()


# --- versions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One registered, immutable version of a model: its folder and its parsed manifest."""

    name: str
    version: int
    path: Path
    manifest: dict

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's input columns, in input order."""
        return tuple(self.manifest["feature_names"])

    @property
    def feature_hash(self) -> str:
        return self.manifest["feature_hash"]

    @property
    def metrics(self) -> dict:
        return dict(self.manifest["metrics"])

    def artifact(self, filename: str) -> Path:
        """The path of one artifact of this version (relative to the version folder)."""
        path = self.path / filename
        if self.path.resolve() not in path.resolve().parents:
            raise ValueError(f"artifact {filename!r} of {self.label} is outside its folder {self.path}")
        if not path.is_file():
            listed = sorted(a["filename"] for a in self.manifest.get("artifacts", []))
            raise FileNotFoundError(
                f"{self.label} has no artifact {filename!r} under {self.path}; its artifacts are {listed}"
            )
        return path

    def check_features(self, expected_hash: str) -> None:
        """Raise `FeatureHashMismatch` unless the model was trained on features hashing to `expected_hash`."""
        if self.feature_hash != expected_hash:
            raise FeatureHashMismatch(
                f"{self.label} was trained on features with hash {self.feature_hash}, but the caller "
                f"expects {expected_hash}: the feature declarations or their order differ from training "
                f"({len(self.feature_names)} features at training). Retrain {self.name} on the current "
                f"feature registry (or pass the feature names it was trained on)."
            )

    def verify(self) -> None:
        """Raise `ArtifactChanged` if any artifact listed in the manifest is missing or altered."""
        problems = []
        for entry in self.manifest.get("artifacts", []):
            path = self.path / entry["filename"]
            if not path.is_file():
                problems.append(f"{entry['filename']} is missing")
                continue
            size, digest = _file_digest(path)
            if (size, digest) != (entry["size"], entry["sha256"]):
                problems.append(
                    f"{entry['filename']} changed (sha256 {digest}, size {size}; "
                    f"manifest: sha256 {entry['sha256']}, size {entry['size']})"
                )
        if problems:
            raise ArtifactChanged(f"{self.label} under {self.path}: " + "; ".join(problems))

    @property
    def label(self) -> str:
        """`<name> v<version>`, for messages."""
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of comparing a candidate version with the current one on the given criteria."""

    promoted: bool
    version: int
    previous_version: int | None
    reason: str
    compared: dict  # metric -> {"candidate": x, "current": y}


# --- registry ---------------------------------------------------------------------------------------


class ModelRegistry:
    """Versioned models under `root` (normally `<warehouse>/models`); `root` is created on first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def under(cls, warehouse: Path) -> ModelRegistry:
        return cls(Path(warehouse) / MODELS_DIRNAME)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def model_dir(self, name: str) -> Path:
        if not _MODEL_NAME.fullmatch(name):
            raise ValueError(
                f"bad model name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
            )
        return self.root / name

    def register(
        self,
        name: str,
        *,
        write_artifacts: Callable[[Path], None],
        feature_names: Sequence[str],
        training_window: dict,
        metrics: dict,
        seed: int,
        params: dict | None = None,
        extra: dict | None = None,
    ) -> ModelVersion:
        """Write a new version of `name`: `write_artifacts(folder)` fills a temporary folder, the
        manifest is added and the folder is renamed to the next `v%04d`. If `write_artifacts` raises,
        nothing is registered."""
        model_dir = self.model_dir(name)
        hashed = feature_hash(feature_names)  # before training output is written: unknown features fail fast
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=model_dir))
        try:
            write_artifacts(staging)
            artifacts = _describe_artifacts(staging)
            manifest = {
                "name": name,
                "created_at": _utc_now(),
                "seed": seed,
                "feature_names": list(feature_names),
                "feature_hash": hashed,
                "registry_hash": registry_hash(),
                "training_window": training_window,
                "metrics": metrics,
                "params": params or {},
                "extra": extra or {},
                "artifacts": artifacts,
            }
            version = self._publish(model_dir, staging, manifest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(name, version)

    def _publish(self, model_dir: Path, staging: Path, manifest: dict) -> int:
        # Another process may take the same number between the scan and the rename; renaming onto an
        # existing (non-empty) version folder fails, and then the next free number is tried.
        for _ in range(_RENAME_ATTEMPTS):
            version = _next_version(model_dir)
            _write_json(staging / MANIFEST, {**manifest, "version": version})
            try:
                os.rename(staging, model_dir / _version_dirname(version))
            except OSError:
                if (model_dir / _version_dirname(version)).exists():
                    continue
                raise
            return version
        raise RuntimeError(f"could not allocate a version under {model_dir} after {_RENAME_ATTEMPTS} attempts")

    def versions(self, name: str) -> list[ModelVersion]:
        """Every registered version of `name`, oldest first; [] if there is none."""
        model_dir = self.model_dir(name)
        return [self.get(name, v) for v in _version_numbers(model_dir)]

    def get(self, name: str, version: int) -> ModelVersion:
        path = self.model_dir(name) / _version_dirname(version)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            known = _version_numbers(self.model_dir(name))
            raise LookupError(f"no version {version} of model {name!r} under {self.root}; versions: {known}")
        return ModelVersion(name=name, version=version, path=path, manifest=json.loads(manifest_path.read_text()))

    def current(self, name: str) -> ModelVersion | None:
        """The promoted version of `name`, or None if none has been promoted."""
        pointer = self._current_pointer(name)
        return None if pointer is None else self.get(name, int(pointer["version"]))

    def _current_pointer(self, name: str) -> dict | None:
        path = self.model_dir(name) / CURRENT
        return json.loads(path.read_text()) if path.is_file() else None

    def promote_if_not_worse(
        self, name: str, version: int, *, criteria: Mapping[str, str], tolerance: float = 0.0
    ) -> PromotionDecision:
        """Make `version` current if there is no current model or if, on every criterion (metric ->
        "min" or "max", looked up in the manifests' metrics), it is no worse than the current one by
        more than `tolerance` (absolute). The decision is appended to promotions.jsonl either way."""
        if not criteria:
            raise ValueError("no promotion criteria given")
        bad = {m: d for m, d in criteria.items() if d not in DIRECTIONS}
        if bad:
            raise ValueError(f"criteria directions must be one of {DIRECTIONS}: {bad}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        candidate = self.get(name, version)
        candidate_metrics = candidate.metrics
        missing = [m for m in criteria if m not in candidate_metrics]
        if missing:
            raise ValueError(f"{candidate.label} has no metric {missing} (its metrics: {sorted(candidate_metrics)})")
        current = self.current(name)
        current_metrics = current.metrics if current is not None else {}
        compared = {
            m: {
                "candidate": _metric_value(candidate, m, candidate_metrics[m]),
                "current": _metric_value(current, m, current_metrics[m]) if m in current_metrics else None,
            }
            for m in criteria
        }
        if current is None:
            decision = PromotionDecision(True, version, None, "first model", compared)
        elif current.version == version:
            decision = PromotionDecision(True, version, version, f"v{version} is already current", compared)
        else:
            decision = _compare(version, current.version, criteria, compared, tolerance)
        if decision.promoted and decision.previous_version != version:
            self._write_current(name, version, decision.reason)
        self._log(name, {**asdict(decision), "forced": False, "criteria": dict(criteria), "tolerance": tolerance})
        return decision

    def promote(self, name: str, version: int, *, reason: str) -> None:
        """Make `version` current regardless of metrics (an operator override); logged as forced."""
        self.get(name, version)  # must exist
        previous = self._current_pointer(name)
        self._write_current(name, version, reason)
        self._log(
            name,
            {
                "promoted": True,
                "version": version,
                "previous_version": None if previous is None else previous["version"],
                "reason": reason,
                "compared": {},
                "forced": True,
            },
        )

    def load_current_checked(self, name: str, *, expected_hash: str, train_hint: str | None = None) -> ModelVersion:
        """The current version of `name`, after checking it was trained on features hashing to
        `expected_hash`; `train_hint` (e.g. a command) is quoted when there is no current model."""
        current = self.current(name)
        if current is None:
            hint = train_hint or "ModelRegistry.register, then promote_if_not_worse or promote"
            raise LookupError(f"no promoted {name} model under {self.root}; train one with {hint}")
        current.check_features(expected_hash)
        return current

    def _write_current(self, name: str, version: int, reason: str) -> None:
        _write_json(self.model_dir(name) / CURRENT, {"version": version, "promoted_at": _utc_now(), "reason": reason})

    def _log(self, name: str, record: dict) -> None:
        line = json.dumps({"name": name, "decided_at": _utc_now(), **record}, sort_keys=True, default=str)
        with open(self.model_dir(name) / PROMOTIONS, "a", encoding="utf-8") as out:
            out.write(line + "\n")


# --- helpers ----------------------------------------------------------------------------------------


def _compare(
    version: int, current_version: int, criteria: Mapping[str, str], compared: dict, tolerance: float
) -> PromotionDecision:
    """Promote unless some criterion of the candidate is worse than the current one's by more than tolerance."""
    worse, fine, uncompared = [], [], []
    for metric, direction in criteria.items():
        cand, cur = compared[metric]["candidate"], compared[metric]["current"]
        if cur is None:
            uncompared.append(f"v{current_version} has no {metric} (candidate {_fmt(cand)}), not compared")
        elif _is_worse(cand, cur, direction, tolerance):
            worse.append(
                f"{metric} {_fmt(cand)} worse than {_fmt(cur)} of v{current_version} "
                f"({direction}imise, tolerance {_fmt(tolerance)})"
            )
        else:
            sign = "<=" if direction == "min" else ">="
            fine.append(
                f"{metric} {_fmt(cand)} {sign} {_fmt(cur)} of v{current_version}"
                + (f" within tolerance {_fmt(tolerance)}" if tolerance else "")
            )
    if worse:
        return PromotionDecision(False, version, current_version, "; ".join(worse + fine + uncompared), compared)
    return PromotionDecision(True, version, current_version, "; ".join(fine + uncompared), compared)


def _is_worse(candidate: float, current: float, direction: str, tolerance: float) -> bool:
    # NaN compares false both ways, which would wave a NaN candidate through: a NaN candidate is
    # worse than anything, and anything is no worse than a NaN current.
    if math.isnan(candidate):
        return True
    if math.isnan(current):
        return False
    if direction == "min":
        return candidate > current + tolerance
    return candidate < current - tolerance


def _metric_value(model: ModelVersion, metric: str, value: Any) -> float:
    if value is None:  # a metric that could not be computed (e.g. an AUC on one class): NaN, never better
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{model.label}: metric {metric} is {value!r}, not a number")
    return float(value)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _version_dirname(version: int) -> str:
    return f"v{version:04d}"


def _version_numbers(model_dir: Path) -> list[int]:
    """Published version numbers under `model_dir`, ascending (temporary folders are not versions)."""
    if not model_dir.is_dir():
        return []
    matches = (_VERSION_DIR.fullmatch(p.name) for p in model_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in matches if m)


def _next_version(model_dir: Path) -> int:
    return max(_version_numbers(model_dir), default=0) + 1


def _describe_artifacts(folder: Path) -> list[dict]:
    """filename (relative, '/'-separated), sha256 and size of every file `write_artifacts` wrote."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"write_artifacts wrote no files into {folder}")
    described = []
    for path in files:
        filename = path.relative_to(folder).as_posix()
        if filename == MANIFEST:
            raise ValueError(f"write_artifacts must not write {MANIFEST}: the registry writes it")
        size, digest = _file_digest(path)
        described.append({"filename": filename, "sha256": digest, "size": size})
    return described


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _write_json(path: Path, payload: dict) -> None:
    """Write `payload` to `path` atomically: a temporary file beside it, flushed, then os.replace."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2, sort_keys=True, default=str)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
