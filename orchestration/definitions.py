"""Assembles homefeed's Dagster definitions; `dagster dev` loads `defs` from here."""

import dagster as dg

from core.settings import HomefeedSettings, load_settings
from orchestration.assets.candidates import CANDIDATE_ASSETS
from orchestration.assets.features import FEATURE_ASSETS
from orchestration.assets.graph import graph_assets
from orchestration.assets.ingestion import ingestion_assets
from orchestration.assets.publication import PUBLICATION_ASSETS, rollback_job
from orchestration.assets.quality import quality_checks
from orchestration.assets.ranking import RANKING_ASSETS
from orchestration.assets.representation_snapshots import REPRESENTATION_SNAPSHOT_ASSETS
from orchestration.assets.simclusters import simclusters_assets
from orchestration.assets.training import TRAINING_ASSETS
from orchestration.assets.twhin import twhin_assets
from orchestration.jobs import (
    build_all_job,
    candidate_tables_job,
    daily_build_job,
    ingest_job,
    publish_job,
    ranked_feeds_job,
    representation_snapshots_job,
    training_set_job,
)
from orchestration.resource_bindings import resources_from_settings
from orchestration.schedules import daily_build_schedule, raw_input_sensor

MAIN_ASSETS = [
    *ingestion_assets,
    *graph_assets,
    *simclusters_assets,
    *twhin_assets,
    *CANDIDATE_ASSETS,
    *FEATURE_ASSETS,
    *TRAINING_ASSETS,
    *RANKING_ASSETS,
    *PUBLICATION_ASSETS,
]
# The training set's representation snapshots (partitioned by the cut) run without checks.
ALL_ASSETS = [*MAIN_ASSETS, *REPRESENTATION_SNAPSHOT_ASSETS]
ALL_CHECKS = quality_checks([key.to_user_string() for asset in MAIN_ASSETS for key in asset.keys])


def build_definitions(settings: HomefeedSettings) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[
            ingest_job,
            build_all_job,
            candidate_tables_job,
            representation_snapshots_job,
            training_set_job,
            ranked_feeds_job,
            daily_build_job,
            publish_job,
            rollback_job,
        ],
        schedules=[daily_build_schedule],
        sensors=[raw_input_sensor],
        resources=resources_from_settings(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())
