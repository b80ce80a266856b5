"""The two declarations of a representation asset: the main one, and its representation snapshot.

The main asset (unpartitioned, keyed by its table's name, in its layer's group) reads the raw input
and `<warehouse>/tables` and builds as of the run (`WarehouseResource.now()`). Its snapshot (key
`as_of/<table>`, group `training_representations`, partitioned by the cut: `representations_as_of`,
key `%Y%m%dT%H%M%SZ`) reads the raw input cut at that moment, `<warehouse>/as_of/<cut>/raw`, writes
`<warehouse>/as_of/<cut>/warehouse/tables` and builds as of the cut: the representations the
training set reads (docs/training_set.md). One asset factory, given a variant, declares either, so
each job's logic is written once; `AssetVariant.warehouse` gives its body the right paths and time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from orchestration.resources import WarehouseResource

SNAPSHOT_PREFIX = "as_of"
SNAPSHOT_GROUP = "training_representations"
CUT_FORMAT = "%Y%m%dT%H%M%SZ"
REPRESENTATIONS_AS_OF = dg.DynamicPartitionsDefinition(name="representations_as_of")
# The snapshot asset of the raw input cut at the partition's moment, upstream of its bronze tables.
RAW_INPUT = "raw_input"


def partition_key_of_cut(cut: datetime) -> str:
    return cut.astimezone(UTC).strftime(CUT_FORMAT)


def cut_of_partition_key(key: str) -> datetime:
    return datetime.strptime(key, CUT_FORMAT).replace(tzinfo=UTC)


def snapshot_dir(warehouse_root: Path, cut: datetime) -> Path:
    """`<warehouse>/as_of/<cut>`: the snapshot's raw input (`raw`) and its warehouse (`warehouse`)."""
    return warehouse_root / SNAPSHOT_PREFIX / partition_key_of_cut(cut)


def snapshot_warehouse_dir(warehouse_root: Path, cut: datetime) -> Path:
    return snapshot_dir(warehouse_root, cut) / "warehouse"


@dataclass(frozen=True)
class SnapshotWarehouse:
    """A representation snapshot's warehouse, read and written like a `WarehouseResource`."""

    warehouse_root: Path  # the main warehouse's
    cut: datetime
    source_raw_dir: Path  # the raw input the cut is taken from

    @property
    def root(self) -> Path:
        return snapshot_warehouse_dir(self.warehouse_root, self.cut)

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def table_path(self, name: str) -> Path:
        return self.tables_dir / name

    @property
    def raw_dir(self) -> Path:
        """The raw input as known at the cut (the snapshot asset `as_of/raw_input` writes it)."""
        return snapshot_dir(self.warehouse_root, self.cut) / "raw"

    def now(self) -> datetime:
        return self.cut


# What an asset body reads and writes through: `table_path`, `tables_dir`, `raw_dir`, `now()`.
AssetWarehouse = WarehouseResource | SnapshotWarehouse


@dataclass(frozen=True)
class AssetVariant:
    """How an asset factory declares its asset: key prefix, group and partitioning, and where the
    body reads and writes."""

    key_prefix: tuple[str, ...] = ()
    group_name: str | None = None  # None: the asset's own group
    partitions_def: dg.PartitionsDefinition | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.partitions_def is not None

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, name])

    def keys(self, names: Iterable[str]) -> list[dg.AssetKey]:
        return [self.key(name) for name in names]

    def ins(self, names: Iterable[str]) -> dict[str, dg.AssetIn]:
        """Upstream tables passed to the body as parameters of the same names (loaded by the
        `io_manager`, `orchestration.delta_io_manager`)."""
        return {name: dg.AssetIn(key=self.key(name)) for name in names}

    def op_name(self, name: str) -> str:
        """A multi-asset's op name, unique among the variants."""
        return "__".join([*self.key_prefix, name])

    def group(self, own_group: str) -> str:
        return self.group_name or own_group

    def raw_input_deps(self) -> list[dg.AssetKey]:
        """What an ingestion asset reads its raw table from, when that is an asset (the snapshot's cut)."""
        return [self.key(RAW_INPUT)] if self.is_snapshot else []

    def warehouse(self, context: dg.AssetExecutionContext, resource: WarehouseResource) -> AssetWarehouse:
        """The main warehouse, or the side warehouse of the partition's cut."""
        if not self.is_snapshot:
            return resource
        return SnapshotWarehouse(
            warehouse_root=resource.root,
            cut=cut_of_partition_key(context.partition_key),
            source_raw_dir=resource.raw_dir,
        )


MAIN = AssetVariant()
SNAPSHOT = AssetVariant(key_prefix=(SNAPSHOT_PREFIX,), group_name=SNAPSHOT_GROUP, partitions_def=REPRESENTATIONS_AS_OF)
