"""Data-quality gates: a blocking Dagster asset check on every Delta table asset.

Each check runs the table's Great Expectations suites (`data_quality`) right after the table is
written. A failed check stops every asset downstream of it in the run (Dagster's blocking checks),
so a table that fails its suite is never built upon, and never published. The check's metadata
holds the failed expectations with examples; `homefeed check` runs the same suites on demand.
"""

from __future__ import annotations

import dagster as dg

from data_quality.specs import TABLE_SPECS
from data_quality.validation import check_table
from jobs.delta_io import read_delta
from orchestration.resources import QualityResource, SparkResource, WarehouseResource

QUALITY_CHECK = "quality"


def quality_check_metadata(result) -> dict:
    failures = result.failures
    return {
        "rows": result.rows,
        "expectations": len(result.outcomes),
        "failed": len(failures),
        "failed_expectations": dg.MetadataValue.md("\n".join(f"- {o.line()}" for o in failures) or "none"),
        "phase_seconds": dg.MetadataValue.json(result.phase_seconds),
        "result": dg.MetadataValue.json(result.as_metadata()),
    }


def table_quality_check(table: str) -> dg.AssetChecksDefinition:
    spec = TABLE_SPECS[table]

    @dg.asset_check(
        asset=table,
        name=QUALITY_CHECK,
        blocking=True,
        description=f"The Great Expectations suites of `{table}` (data_quality.specs): schema, "
        "keys, values, references, distributions, freshness.",
    )
    def _check(spark: SparkResource, warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
        session = spark.get_session()

        def read(name: str):
            return read_delta(session, warehouse.table_path(name))

        result = check_table(read(table), spec, read, as_of=warehouse.now(), bounds=quality.bounds())
        return dg.AssetCheckResult(
            passed=result.success, severity=dg.AssetCheckSeverity.ERROR, metadata=quality_check_metadata(result)
        )

    return _check


def quality_checks(asset_keys: list[str]) -> list[dg.AssetChecksDefinition]:
    """A check for each asset that is a table with a spec."""
    return [table_quality_check(name) for name in asset_keys if name in TABLE_SPECS]
