"""Materialize a selection of assets in-process, in one Dagster run, and report its outcome.

`orchestration.run.run_assets` (what `homefeed run` does) builds on it; so do the training set's
representation snapshots, one run per partition (`orchestration.snapshot_builds`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import dagster as dg

from core.settings import HomefeedSettings
from orchestration.definitions import ALL_ASSETS, ALL_CHECKS
from orchestration.errors import without_jvm_frames
from orchestration.resource_bindings import resources_from_settings


@dataclass(frozen=True)
class StepFailure:
    step: str
    message: str


@dataclass(frozen=True)
class CheckFailure:
    table: str
    check: str
    failed: str  # the failed expectations, a line each


@dataclass(frozen=True)
class RunOutcome:
    success: bool
    materialized: tuple[str, ...]
    failures: tuple[StepFailure, ...] = field(default=())
    skipped: tuple[str, ...] = field(default=())
    step_seconds: dict[str, float] = field(default_factory=dict)
    checks_passed: tuple[str, ...] = field(default=())
    failed_checks: tuple[CheckFailure, ...] = field(default=())
    # Per checked table, where its data-quality check's time went (`TableCheck.phase_seconds`).
    check_phase_seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def failure_text(self) -> str:
        """The failed steps and checks, one clause each."""
        return "; ".join(
            [
                *(f"{f.step}: {f.message}" for f in self.failures),
                *(f"data-quality check of {c.table}: {c.failed}" for c in self.failed_checks),
            ]
        )


def selection_from_string(selection: str) -> dg.AssetSelection:
    """Dagster's parser of a selection string, with the other tables of a selected multi-asset that
    cannot run alone (`key:ranked_feeds` brings `ranked_feeds_sample`, `key:follows` its
    quarantine). Its `group:` terms pass the beta `include_sources` parameter of
    `AssetSelection.groups` themselves, which would warn on every such run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        return dg.AssetSelection.from_string(selection).required_multi_asset_neighbors()


def materialize_assets(
    settings: HomefeedSettings,
    selection: dg.AssetSelection,
    *,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    checks: bool = True,
    asset_config: dict[str, dict] | None = None,
    partition_key: str | None = None,
) -> RunOutcome:
    """Materialize `selection` in one run in this process, each asset followed by its data-quality
    check unless `checks` is False (a side build from a cut of the input, whose source was checked).
    `asset_config`: run config per op name, e.g. {"training_examples": {"days": 2.0}};
    `partition_key`: the partition of the (partitioned) selected assets."""
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources_from_settings(settings),
        selection=selection if checks else selection.without_checks(),
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        run_config={
            "loggers": {"console": {"config": {"log_level": log_level}}},
            **({"ops": {name: {"config": config} for name, config in asset_config.items()}} if asset_config else {}),
        },
    )
    return _outcome(result, instance)


def _outcome(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> RunOutcome:
    materialized = tuple(
        sorted(
            event.asset_key.to_user_string()
            for event in result.get_asset_materialization_events()
            if event.asset_key is not None
        )
    )
    failures = tuple(
        StepFailure(event.step_key or "?", _failure_message(event))
        for event in result.all_node_events
        if event.is_step_failure
    )
    skipped = tuple(event.step_key or "?" for event in result.all_node_events if event.is_step_skipped)
    step_seconds = {
        stats.step_key: round(stats.end_time - stats.start_time, 3)
        for stats in instance.get_run_step_stats(result.run_id)
        if stats.start_time is not None and stats.end_time is not None
    }
    evaluations = result.get_asset_check_evaluations()
    checks_passed = tuple(sorted(e.asset_key.to_user_string() for e in evaluations if e.passed))
    failed_checks = tuple(
        CheckFailure(e.asset_key.to_user_string(), e.check_name, _metadata_text(e.metadata.get("failed_expectations")))
        for e in evaluations
        if not e.passed
    )
    check_phase_seconds = {
        e.asset_key.to_user_string(): dict(_metadata_value(e.metadata.get("phase_seconds")) or {}) for e in evaluations
    }
    return RunOutcome(
        result.success, materialized, failures, skipped, step_seconds, checks_passed, failed_checks, check_phase_seconds
    )


def _metadata_value(value):
    return getattr(value, "value", value)


def _metadata_text(value) -> str:
    return "" if value is None else str(_metadata_value(value))


def _failure_message(event: dg.DagsterEvent) -> str:
    error = event.step_failure_data.error if event.step_failure_data else None
    if error is None:
        return "unknown error"
    # Dagster wraps the asset's own exception in its errors; report the asset's.
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    message = error.message.strip()
    # Messages read "package.module.ClassName: text"; keep the class's short name only.
    head, _, text = message.partition(": ")
    if text and head.split(".")[-1] == error.cls_name:
        message = text
    return f"{error.cls_name}: {without_jvm_frames(message)}"
