"""Bringing the representation snapshots of a training window up to date, as Dagster runs.

Each cut is registered as a partition of `representations_as_of` on the instance; then, per
partition, one run writes the raw input's cut (`as_of/raw_input`, whose materialization metadata
holds a fingerprint of the input and the cut) and, unless the snapshot's marker file says it was
built from that very input already (or `rebuild`), one run builds the rest of the group
`training_representations` for that partition. Nothing here runs inside an asset.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import dagster as dg

from core.settings import HomefeedSettings
from orchestration.asset_variants import (
    RAW_INPUT,
    REPRESENTATIONS_AS_OF,
    SNAPSHOT,
    SNAPSHOT_GROUP,
    cut_of_partition_key,
    partition_key_of_cut,
    snapshot_warehouse_dir,
)
from orchestration.build_marker import built_from, write_build_marker
from orchestration.materialize import RunOutcome, materialize_assets

RAW_INPUT_SELECTION = dg.AssetSelection.assets(SNAPSHOT.key(RAW_INPUT))
REPRESENTATIONS_SELECTION = dg.AssetSelection.groups(SNAPSHOT_GROUP) - RAW_INPUT_SELECTION
# Marks a snapshot's build apart from an evaluation's build of the same input (`side_builds`).
FINGERPRINT_SCOPE = "representations"


class SnapshotBuildError(RuntimeError):
    """A partition's run failed; `outcome` says which steps and why."""

    def __init__(self, partition_key: str, outcome: RunOutcome) -> None:
        self.outcome = outcome
        super().__init__(
            f"building the representation snapshot {partition_key} (partition of "
            f"`{REPRESENTATIONS_AS_OF.name}`) failed: {outcome.failure_text()}"
        )


def build_representation_snapshots(
    settings: HomefeedSettings,
    cuts: Iterable[datetime],
    *,
    instance: dg.DagsterInstance,
    rebuild: bool = False,
    log_level: str = "INFO",
) -> dict[str, bool]:
    """Register the cuts' partitions and build each one not current; return partition key -> whether
    it was built (False: reused)."""
    keys = sorted({partition_key_of_cut(cut) for cut in cuts})
    register_partitions(instance, keys)
    return {key: build_snapshot(settings, key, instance=instance, rebuild=rebuild, log_level=log_level) for key in keys}


def register_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    new = [key for key in keys if not instance.has_dynamic_partition(REPRESENTATIONS_AS_OF.name, key)]
    if new:
        instance.add_dynamic_partitions(REPRESENTATIONS_AS_OF.name, new)


def build_snapshot(
    settings: HomefeedSettings, partition_key: str, *, instance: dg.DagsterInstance, rebuild: bool, log_level: str
) -> bool:
    """Cut the raw input at the partition's moment; build the representations from it unless the
    snapshot's marker holds the cut's fingerprint. Whether it built them."""
    _run_partition(settings, RAW_INPUT_SELECTION, partition_key, instance=instance, log_level=log_level)
    fingerprint = f"{raw_input_fingerprint(instance, partition_key)}:{FINGERPRINT_SCOPE}"
    cut = cut_of_partition_key(partition_key)
    warehouse = snapshot_warehouse_dir(settings.warehouse_root, cut)
    if not rebuild and built_from(warehouse, fingerprint):
        return False
    outcome = _run_partition(settings, REPRESENTATIONS_SELECTION, partition_key, instance=instance, log_level=log_level)
    write_build_marker(warehouse, fingerprint=fingerprint, as_of=cut, step_seconds=outcome.step_seconds)
    return True


def raw_input_fingerprint(instance: dg.DagsterInstance, partition_key: str) -> str:
    """The fingerprint the partition's latest `as_of/raw_input` materialization recorded."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SNAPSHOT.key(RAW_INPUT), asset_partitions=[partition_key]),
        limit=1,
    ).records
    if not records:
        raise RuntimeError(f"no materialization of {SNAPSHOT.key(RAW_INPUT).to_user_string()} [{partition_key}]")
    return records[0].asset_materialization.metadata["fingerprint"].value


def _run_partition(
    settings: HomefeedSettings,
    selection: dg.AssetSelection,
    partition_key: str,
    *,
    instance: dg.DagsterInstance,
    log_level: str,
) -> RunOutcome:
    outcome = materialize_assets(
        settings, selection, instance=instance, log_level=log_level, checks=False, partition_key=partition_key
    )
    if not outcome.success:
        raise SnapshotBuildError(partition_key, outcome)
    return outcome
