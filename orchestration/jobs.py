"""Dagster jobs: selections of assets that run together."""

import dagster as dg

from orchestration.assets.ingestion import INGESTION_GROUP

# One Spark session per process: run the steps of a job in one process, one after another,
# rather than starting a JVM per step on a small machine.
ingest_job = dg.define_asset_job(
    name="ingest",
    selection=dg.AssetSelection.groups(INGESTION_GROUP),
    description="Validate the raw input against the data contract and write the bronze Delta tables.",
    executor_def=dg.in_process_executor,
)

build_all_job = dg.define_asset_job(
    name="build_all",
    selection=dg.AssetSelection.all(),
    description="Every asset, from ingestion to the last table built so far.",
    executor_def=dg.in_process_executor,
)
