"""The Delta IO manager: which table an asset key names, and assets that take their upstream tables
as parameters and return a DataFrame, main and representation-snapshot variants."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from deltalake import DeltaTable

from orchestration.asset_variants import REPRESENTATIONS_AS_OF, partition_key_of_cut, snapshot_warehouse_dir
from orchestration.delta_io_manager import table_path_of_asset
from orchestration.resources import WarehouseResource

CUT = datetime(2026, 3, 2, tzinfo=UTC)
FOLLOWS = [(1, 2), (2, 1), (1, 3), (3, 4), (4, 3), (5, 1)]
FOLLOWS_SCHEMA = "follower_id bigint, followee_id bigint, created_at timestamp"


def _mutual_pairs(edges) -> set[tuple[int, int]]:
    edge_set = set(edges)
    return {(a, b) for a, b in edge_set if (b, a) in edge_set}


def test_a_key_names_the_main_table_or_the_snapshot_table_of_its_cut(tmp_path):
    warehouse = WarehouseResource(path=str(tmp_path), raw_input=str(tmp_path / "raw"))
    assert table_path_of_asset(warehouse, dg.AssetKey("follows")) == tmp_path / "tables" / "follows"
    snapshot = table_path_of_asset(warehouse, dg.AssetKey(["as_of", "follows"]), partition_key_of_cut(CUT))
    assert snapshot == snapshot_warehouse_dir(tmp_path, CUT) / "tables" / "follows"
    assert snapshot == tmp_path / "as_of" / "20260302T000000Z" / "warehouse" / "tables" / "follows"
    with pytest.raises(ValueError, match="names no warehouse table"):
        table_path_of_asset(warehouse, dg.AssetKey(["elsewhere", "follows"]))
    with pytest.raises(ValueError, match="names no warehouse table"):
        table_path_of_asset(warehouse, dg.AssetKey(["as_of", "follows"]))  # a snapshot needs its cut


def _write_follows(spark, path, edges):
    from jobs.delta_io import overwrite_delta

    rows = [(a, b, CUT) for a, b in edges]
    overwrite_delta(spark.createDataFrame(rows, FOLLOWS_SCHEMA), path)


def _pairs(path, left: str, right: str) -> set[tuple[int, int]]:
    table = DeltaTable(str(path)).to_pyarrow_table()
    return set(zip(table.column(left).to_pylist(), table.column(right).to_pylist(), strict=True))


def test_an_asset_reads_its_inputs_and_its_output_is_written_with_its_row_count(spark, settings, tmp_path):
    from orchestration.assets.graph import mutual_follows_asset
    from orchestration.definitions import ALL_ASSETS
    from orchestration.resource_bindings import resources_from_settings

    run_settings = settings.model_copy(update={"warehouse": tmp_path / "warehouse"})
    _write_follows(spark, run_settings.tables_dir / "follows", FOLLOWS)
    result = dg.materialize(
        ALL_ASSETS, selection=[mutual_follows_asset], resources=resources_from_settings(run_settings)
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    expected = _mutual_pairs(FOLLOWS)
    assert expected == {(1, 2), (2, 1), (3, 4), (4, 3)}
    assert metadata["dagster/row_count"].value == len(expected)
    assert metadata["path"].value == str(run_settings.tables_dir / "mutual_follows")
    assert _pairs(run_settings.tables_dir / "mutual_follows", "user_id", "mutual_id") == expected


def test_a_snapshot_asset_reads_and_writes_the_tables_of_its_partitions_cut(spark, settings, tmp_path):
    from orchestration.asset_variants import SNAPSHOT
    from orchestration.definitions import ALL_ASSETS
    from orchestration.resource_bindings import resources_from_settings

    run_settings = settings.model_copy(update={"warehouse": tmp_path / "warehouse"})
    key = partition_key_of_cut(CUT)
    snapshot_tables = snapshot_warehouse_dir(run_settings.warehouse, CUT) / "tables"
    # Two producers followed by the same ten accounts in the snapshot; nothing in the main warehouse.
    _write_follows(spark, snapshot_tables / "follows", [(f, p) for f in range(10, 20) for p in (1, 2)])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(REPRESENTATIONS_AS_OF.name, [key])
    result = dg.materialize(
        ALL_ASSETS,
        selection=[SNAPSHOT.key("simclusters_producer_similarity")],
        resources=resources_from_settings(run_settings),
        partition_key=key,
        instance=instance,
    )
    assert result.success
    similarity = DeltaTable(str(snapshot_tables / "simclusters_producer_similarity")).to_pyarrow_table()
    assert similarity.num_rows == 2  # 1 -> 2 and 2 -> 1, cosine 1
    assert not (run_settings.tables_dir / "simclusters_producer_similarity").exists()
