"""Materialize assets in-process (what `homefeed run` does), reporting progress and the outcome.

A selection that holds `training_examples` first brings the representation snapshots of its window
up to date (`orchestration.training_set.prepare_training_examples`: one run per partition of
`representations_as_of` that is not current), then runs the selection.
"""

from __future__ import annotations

import dagster as dg

from core.settings import HomefeedSettings
from orchestration.definitions import ALL_ASSETS
from orchestration.jobs import DEFAULT_BUILD_SELECTION
from orchestration.materialize import (
    CheckFailure,
    RunOutcome,
    StepFailure,
    materialize_assets,
    selection_from_string,
)
from orchestration.snapshot_builds import SnapshotBuildError
from orchestration.training_examples import TRAINING_TABLE
from orchestration.training_set import prepare_training_examples

__all__ = ["CheckFailure", "RunOutcome", "StepFailure", "run_assets", "selection_from_string"]


def run_assets(
    settings: HomefeedSettings,
    *,
    selection: str | None = None,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    checks: bool = True,
    asset_config: dict[str, dict] | None = None,
) -> RunOutcome:
    """Materialize every asset of the default build (or `selection`, a Dagster asset selection
    string) in this process, each followed by its data-quality check unless `checks` is False (a
    side build of a cut of the input for an evaluation, whose source was checked).
    `asset_config`: run config per asset name, e.g. {"training_examples": {"days": 2.0}}."""
    instance = instance or dg.DagsterInstance.ephemeral()
    selected = selection_from_string(selection or DEFAULT_BUILD_SELECTION)
    if selects(selected, TRAINING_TABLE):
        try:
            prepare_training_examples(
                settings, (asset_config or {}).get(TRAINING_TABLE, {}), instance=instance, log_level=log_level
            )
        except SnapshotBuildError as error:
            return error.outcome
        except (ValueError, FileNotFoundError) as error:  # no window: the inputs are missing or empty
            return RunOutcome(False, (), (StepFailure(TRAINING_TABLE, f"{type(error).__name__}: {error}"),))
    return materialize_assets(
        settings, selected, instance=instance, log_level=log_level, checks=checks, asset_config=asset_config
    )


def selects(selection: dg.AssetSelection, asset_name: str) -> bool:
    return dg.AssetKey(asset_name) in selection.resolve(ALL_ASSETS)
