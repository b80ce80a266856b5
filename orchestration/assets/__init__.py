"""Dagster assets, one module per layer."""

import dagster as dg

from jobs.delta_io import rows_written_by_last_commit
from orchestration.asset_variants import AssetWarehouse


def written_table_result(warehouse: AssetWarehouse, name: str, **metadata) -> dg.MaterializeResult:
    """The result of an asset that just wrote Delta table `name`: its row count, path and `metadata`."""
    return table_result(warehouse, name, keyed=False, **metadata)


def table_result(warehouse: AssetWarehouse, name: str, *, keyed: bool = True, **metadata) -> dg.MaterializeResult:
    """`written_table_result` for one of the tables of a multi-asset, keyed by the table's name
    (`keyed`; else the asset's own key)."""
    path = warehouse.table_path(name)
    return dg.MaterializeResult(
        asset_key=name if keyed else None,
        metadata={
            "dagster/row_count": rows_written_by_last_commit(path),
            "path": dg.MetadataValue.path(str(path)),
            **metadata,
        },
    )
