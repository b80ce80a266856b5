"""Building the training set (`homefeed training-set`, `homefeed eval ranking`, and a `homefeed run`
whose selection holds `training_examples`): the representation snapshots of the window's cuts
brought up to date (`orchestration.snapshot_builds`, one run per partition), then the asset
`training_examples`, each a Dagster run in this process on the same instance.

The examples are the pure transform `jobs.training_set.training_examples`; the asset and its reads
and writes are `orchestration.assets.training` and `orchestration.training_examples`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import dagster as dg
from pyspark.sql import SparkSession

from core.settings import HomefeedSettings
from features.labels import LabelConfig
from jobs.training_set import TrainingWindow
from orchestration.asset_variants import snapshot_dir as representations_dir
from orchestration.assets.training import TrainingSetParams
from orchestration.materialize import materialize_assets
from orchestration.resource_bindings import resources_from_settings
from orchestration.snapshot_builds import build_representation_snapshots
from orchestration.training_examples import (
    TRAINING_TABLE,
    representation_cuts,
    require_bronze_inputs,
    training_build_time,
    training_set_summary,
)

__all__ = [
    "TRAINING_TABLE",
    "build_training_set",
    "prepare_training_examples",
    "representations_dir",
    "training_set_params",
]

TRAINING_SELECTION = dg.AssetSelection.assets(TRAINING_TABLE)
_DAY = timedelta(days=1)


def build_training_set(
    settings: HomefeedSettings,
    spark: SparkSession,
    *,
    window: TrainingWindow,
    daily: bool = True,
    rebuild: bool = False,
    instance: dg.DagsterInstance | None = None,
) -> dict:
    """Build and write `training_examples` for `window`; return a summary (its provenance, and rows,
    users and positive rates per split). `daily`: one representation snapshot per snapshot day (else
    one, at the window's start); `rebuild`: rebuild them even if current; `instance`: where the runs
    are recorded (default: an ephemeral one)."""
    require_bronze_inputs(settings.tables_dir, settings.warehouse)
    instance = instance or dg.DagsterInstance.ephemeral()
    build_time, params = training_set_params(window, daily=daily, rebuild=rebuild)
    run_settings = settings.model_copy(update={"as_of": build_time})
    build_representation_snapshots(
        run_settings, representation_cuts(window, daily=daily).values(), instance=instance, rebuild=rebuild
    )
    outcome = materialize_assets(
        run_settings,
        TRAINING_SELECTION,
        instance=instance,
        checks=False,
        asset_config={TRAINING_TABLE: params.model_dump()},
    )
    if not outcome.success:
        raise RuntimeError(f"building {TRAINING_TABLE} failed: {outcome.failure_text()}")
    return training_set_summary(spark, settings.tables_dir)


def prepare_training_examples(
    settings: HomefeedSettings, config: Mapping, *, instance: dg.DagsterInstance, log_level: str = "INFO"
) -> None:
    """Before a run that materializes `training_examples` with run config `config`: build the
    representation snapshots of its window that are not current."""
    params = TrainingSetParams(**config)
    require_bronze_inputs(settings.tables_dir, settings.warehouse)
    spark = resources_from_settings(settings)["spark"].get_session()
    window = params.window(training_build_time(spark, settings.tables_dir, settings.as_of))
    build_representation_snapshots(
        settings,
        representation_cuts(window, daily=params.daily_representations).values(),
        instance=instance,
        rebuild=params.rebuild_representations,
        log_level=log_level,
    )


def training_set_params(window: TrainingWindow, *, daily: bool, rebuild: bool) -> tuple[datetime, TrainingSetParams]:
    """The build time and the asset's config whose window is `window` (one `TrainingWindow.ending_at` gives)."""
    build_time = window.end + LabelConfig.label_window
    params = TrainingSetParams(
        days=(window.end - window.start) / _DAY,
        validation_days=(window.test_start - window.validation_start) / _DAY,
        test_days=(window.end - window.test_start) / _DAY,
        daily_representations=daily,
        rebuild_representations=rebuild,
    )
    if params.window(build_time) != window:
        raise ValueError(f"the window {window.as_dict()} does not end one label window before a build time")
    return build_time, params
