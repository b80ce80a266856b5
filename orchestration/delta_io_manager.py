"""The warehouse's Delta tables as Dagster inputs and outputs.

An asset whose work is "read some tables, compute a DataFrame, write it" takes its upstream tables
as parameters and returns its DataFrame; this IO manager reads each input from the upstream asset's
Delta table and writes the output in one Delta commit (`jobs.delta_io.overwrite_delta`), recording
the row count the commit wrote and the table's path. Asset key -> table:

- `<table>`            -> `<warehouse>/tables/<table>` (`WarehouseResource.table_path`)
- `as_of/<table>`, partition `<cut>` -> the representation snapshot's table of that cut
  (`orchestration.asset_variants.SnapshotWarehouse`)

Assets that write several tables, publish, or write with options of their own (partitioning, commit
metadata, quarantine) still write by path and return a `MaterializeResult`; Dagster does not call
an IO manager for those, but their tables load through this one as any other upstream.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame

from jobs.delta_io import overwrite_delta, read_delta, rows_written_by_last_commit
from orchestration.asset_variants import SNAPSHOT_PREFIX, SnapshotWarehouse, cut_of_partition_key
from orchestration.resources import SparkResource, WarehouseResource


def table_path_of_asset(warehouse: WarehouseResource, asset_key: dg.AssetKey, partition_key: str | None = None) -> Path:
    """The Delta table an asset's key (and, for a representation snapshot, its partition) names."""
    *prefix, name = asset_key.path
    if not prefix:
        return warehouse.table_path(name)
    if prefix == [SNAPSHOT_PREFIX] and partition_key is not None:
        snapshot = SnapshotWarehouse(
            warehouse_root=warehouse.root, cut=cut_of_partition_key(partition_key), source_raw_dir=warehouse.raw_dir
        )
        return snapshot.table_path(name)
    raise ValueError(f"asset {asset_key.to_user_string()} names no warehouse table (partition {partition_key!r})")


def _partition_key(context: dg.InputContext | dg.OutputContext) -> str | None:
    return context.asset_partition_key if context.has_asset_partitions else None


class DeltaTableIOManager(dg.ConfigurableIOManager):
    """Loads an upstream asset's Delta table as a Spark DataFrame; writes a returned DataFrame."""

    spark: SparkResource
    warehouse: WarehouseResource

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | None) -> None:
        if obj is None:  # an asset that wrote its own table(s)
            return
        path = table_path_of_asset(self.warehouse, context.asset_key, _partition_key(context))
        overwrite_delta(obj, path)
        context.add_output_metadata(
            {"dagster/row_count": rows_written_by_last_commit(path), "path": dg.MetadataValue.path(str(path))}
        )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        path = table_path_of_asset(self.warehouse, context.asset_key, _partition_key(context))
        return read_delta(self.spark.get_session(), path)
