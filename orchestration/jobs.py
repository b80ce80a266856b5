"""Dagster jobs: selections of assets that run together."""

import dagster as dg

from orchestration.asset_variants import SNAPSHOT_GROUP
from orchestration.assets.candidates import CANDIDATE_TABLES_GROUP
from orchestration.assets.ingestion import INGESTION_GROUP
from orchestration.assets.publication import PUBLICATION_GROUP
from orchestration.assets.ranking import RANKING_GROUP
from orchestration.assets.training import TRAINING_GROUP

# What a plain build materializes: everything up to the feature tables. The training set reads the
# representations rebuilt as of its window (the partitioned snapshots, a second pass over the graph
# jobs per cut) and the rankers train on it; the ranked feeds need a promoted model. Those run on
# their own. The full user x candidate tables are built on demand only (`ranked_feeds` does not
# read them).
NOT_IN_DEFAULT_BUILD = (TRAINING_GROUP, SNAPSHOT_GROUP, RANKING_GROUP, PUBLICATION_GROUP, CANDIDATE_TABLES_GROUP)
DEFAULT_BUILD = dg.AssetSelection.all() - dg.AssetSelection.groups(*NOT_IN_DEFAULT_BUILD)
DEFAULT_BUILD_SELECTION = " and ".join(f"not group:{group}" for group in NOT_IN_DEFAULT_BUILD)
# The default build and the full candidate tables (what `homefeed eval candidates` reads).
WITH_CANDIDATE_TABLES_SELECTION = f"({DEFAULT_BUILD_SELECTION}) or group:{CANDIDATE_TABLES_GROUP}"


def _in_process_job(name: str, selection: dg.AssetSelection, description: str):
    """One Spark session per process: the steps of a job run in one process, one after another,
    rather than a JVM per step on a small machine."""
    return dg.define_asset_job(
        name=name, selection=selection, description=description, executor_def=dg.in_process_executor
    )


ingest_job = _in_process_job(
    "ingest",
    dg.AssetSelection.groups(INGESTION_GROUP),
    "Validate the raw input against the data contract and write the bronze Delta tables.",
)
build_all_job = _in_process_job(
    "build_all",
    DEFAULT_BUILD,
    "Every asset from ingestion to the feature tables (training, ranking and publication run on their own).",
)
training_set_job = _in_process_job(
    "training_set",
    dg.AssetSelection.groups(TRAINING_GROUP),
    "The training_examples table (labelled impressions, point-in-time features), then the rankers. It reads "
    "the representation snapshots of its window (job training_representations), which `homefeed training-set` "
    "and `homefeed run --select group:training` build first.",
)
representation_snapshots_job = _in_process_job(
    "training_representations",
    dg.AssetSelection.groups(SNAPSHOT_GROUP),
    "A representation snapshot of the training set (a partition of representations_as_of, named by its cut): "
    "the raw input as known at the cut, and the bronze, RealGraph, SimClusters and TwHIN tables built from it "
    "as of the cut, in <warehouse>/as_of/<cut>/.",
)
candidate_tables_job = _in_process_job(
    "candidate_tables",
    dg.AssetSelection.groups(CANDIDATE_TABLES_GROUP),
    "The full user x candidate tables, candidates and user_tweet_features, on demand: for debugging and "
    "`homefeed eval candidates` (ranked_feeds retrieves and scores in one pass without them).",
)
ranked_feeds_job = _in_process_job(
    "rank_feeds",
    dg.AssetSelection.groups(RANKING_GROUP),
    "Every user's ranked For You feed, in one pass per block of users with the promoted rankers, and a sample "
    "of users in full (ranked_feeds_sample).",
)
publish_job = _in_process_job(
    "publish",
    dg.AssetSelection.groups(PUBLICATION_GROUP),
    "Publish ranked_feeds to Redis as a new version and switch to it.",
)
daily_build_job = _in_process_job(
    "daily_build",
    DEFAULT_BUILD | dg.AssetSelection.groups(RANKING_GROUP, PUBLICATION_GROUP),
    "The daily build: ingestion to the ranked feeds with the promoted rankers, then their publication to "
    "Redis, every table behind its blocking data-quality check (retraining runs on its own: the "
    "training_set job).",
)
