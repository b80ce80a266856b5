"""Bronze assets: one per data-contract table, each with its quarantine beside it (and, for the
tables the representations read, their snapshots: `orchestration.asset_variants`)."""

import dagster as dg

from core.contract import RAW_TABLES, RawTable
from jobs.delta_io import overwrite_delta, read_delta, rows_written_by_last_commit
from jobs.ingest import count_by_rule, ingest_raw_table, read_raw_table
from orchestration.asset_variants import MAIN, AssetVariant
from orchestration.resources import SparkResource, WarehouseResource

INGESTION_GROUP = "bronze"


def quarantine_table_name(table_name: str) -> str:
    return f"quarantine_{table_name}"


def _referenced_tables(table: RawTable) -> list[str]:
    return sorted({r.target_table for r in table.references if r.target_table != table.name})


def build_ingestion_asset(table: RawTable, variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    quarantine_name = quarantine_table_name(table.name)
    referenced = _referenced_tables(table)
    deps = [*variant.keys(referenced), *variant.raw_input_deps()]

    @dg.multi_asset(
        name=variant.op_name(f"ingest_{table.name}"),
        specs=[
            dg.AssetSpec(
                variant.key(table.name),
                deps=deps,
                group_name=variant.group(INGESTION_GROUP),
                kinds={"spark", "delta"},
                description=f"{table.description} Contract-valid rows of the raw `{table.name}` input.",
            ),
            dg.AssetSpec(
                variant.key(quarantine_name),
                deps=deps,
                group_name=variant.group(INGESTION_GROUP),
                kinds={"spark", "delta"},
                description=f"Rows of the raw `{table.name}` input that broke a contract rule, with the rule.",
            ),
        ],
        partitions_def=variant.partitions_def,
    )
    def ingest(context: dg.AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        targets = {name: read_delta(session, warehouse.table_path(name)) for name in referenced}
        raw = read_raw_table(session, warehouse.raw_dir, table)
        result = ingest_raw_table(raw, table=table, targets=targets, now=warehouse.now())
        table_path = warehouse.table_path(table.name)
        quarantine_path = warehouse.table_path(quarantine_name)
        overwrite_delta(result.valid, table_path)
        overwrite_delta(result.quarantined, quarantine_path)
        by_rule = count_by_rule(result.quarantined)
        result.valid.unpersist()
        result.quarantined.unpersist()

        valid_rows = rows_written_by_last_commit(table_path)
        quarantined_rows = sum(by_rule.values())
        context.log.info(f"{table.name}: {valid_rows} valid rows, {quarantined_rows} quarantined {by_rule or ''}")
        yield dg.MaterializeResult(
            asset_key=variant.key(table.name),
            metadata={
                "dagster/row_count": valid_rows,
                "quarantined_rows": quarantined_rows,
                "path": dg.MetadataValue.path(str(table_path)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=variant.key(quarantine_name),
            metadata={
                "dagster/row_count": quarantined_rows,
                "rows_by_rule": dg.MetadataValue.json(by_rule),
                "path": dg.MetadataValue.path(str(quarantine_path)),
            },
        )

    return ingest


ingestion_assets = [build_ingestion_asset(table) for table in RAW_TABLES]
