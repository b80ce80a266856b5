"""Dagster jobs: selections of assets that run together."""

import dagster as dg

from orchestration.assets.ingestion import INGESTION_GROUP
from orchestration.assets.publication import PUBLICATION_GROUP
from orchestration.assets.ranking import RANKING_GROUP
from orchestration.assets.training import TRAINING_GROUP

# What a plain build materializes: everything up to the feature tables. The training set rebuilds
# the representations as of its window (a second pass over the graph jobs) and the rankers train
# on it; the ranked feeds need a promoted model. Those run as their own jobs.
DEFAULT_BUILD = dg.AssetSelection.all() - dg.AssetSelection.groups(TRAINING_GROUP, RANKING_GROUP, PUBLICATION_GROUP)
DEFAULT_BUILD_SELECTION = (f"not group:{TRAINING_GROUP} and not group:{RANKING_GROUP} "
                           f"and not group:{PUBLICATION_GROUP}")

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
    selection=DEFAULT_BUILD,
    description="Every asset from ingestion to the feature tables (training and ranking run on their own).",
    executor_def=dg.in_process_executor,
)

training_set_job = dg.define_asset_job(
    name="training_set",
    selection=dg.AssetSelection.groups(TRAINING_GROUP),
    description="The training_examples table (labelled impressions, point-in-time features), then the rankers.",
    executor_def=dg.in_process_executor,
)

ranked_feeds_job = dg.define_asset_job(
    name="rank_feeds",
    selection=dg.AssetSelection.groups(RANKING_GROUP),
    description="Every user's ranked For You feed, from the candidates and the promoted rankers.",
    executor_def=dg.in_process_executor,
)

publish_job = dg.define_asset_job(
    name="publish",
    selection=dg.AssetSelection.groups(PUBLICATION_GROUP),
    description="Publish ranked_feeds to Redis as a new version and switch to it.",
    executor_def=dg.in_process_executor,
)

daily_build_job = dg.define_asset_job(
    name="daily_build",
    selection=DEFAULT_BUILD | dg.AssetSelection.groups(RANKING_GROUP, PUBLICATION_GROUP),
    description="The daily build: ingestion to the ranked feeds with the promoted rankers, then their "
                "publication to Redis, every table behind its blocking data-quality check (retraining "
                "runs on its own: the training_set job).",
    executor_def=dg.in_process_executor,
)
