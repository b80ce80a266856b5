"""Reading and writing the warehouse's Delta tables: `<warehouse>/tables/<table name>`."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from core.delta_commits import last_commit
from core.storage import is_delta_table

# Tables are read by deltalake and DuckDB as well as Spark; not all of them read deletion vectors.
DELTA_TABLE_PROPERTIES = {"delta.enableDeletionVectors": "false"}


def table_path(tables_dir: Path, name: str) -> Path:
    return tables_dir / name


def overwrite_delta(
    df: DataFrame, path: Path, *, partition_by: tuple[str, ...] = (), user_metadata: str | None = None
) -> None:
    """Replace the table's contents in one Delta commit: a rerun converges to the same table,
    and a writer that dies before the commit leaves the previous version in place.
    `user_metadata` is stored in the commit (`DESCRIBE HISTORY`'s userMetadata)."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    for key, value in DELTA_TABLE_PROPERTIES.items():
        writer = writer.option(key, value)
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(str(path))


def read_delta(spark: SparkSession, path: Path) -> DataFrame:
    if not is_delta_table(path):
        raise FileNotFoundError(f"no Delta table at {path}; materialize its asset first")
    return spark.read.format("delta").load(str(path))


def rows_written_by_last_commit(path: Path) -> int:
    """Rows the table's latest commit wrote, from the Delta log (no Spark job)."""
    metrics = last_commit(path).get("operationMetrics") or {}
    return int(metrics.get("numOutputRows", 0))


def rows_in_table(path: Path) -> int:
    """Rows in the table's current version, from the per-file statistics in the Delta log."""
    from deltalake import DeltaTable

    actions = DeltaTable(str(path)).get_add_actions(flatten=True)
    return int(sum(actions.column("num_records").to_pylist() or [0]))
