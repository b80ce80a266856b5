"""Candidate generation asset: the `candidates` Delta table, per-user pools from six sources.

The transforms are the `jobs.candidates` package; the table and the sources are described in
docs/candidates.md.
"""

import dataclasses

import dagster as dg
from pyspark.sql import Observation

from jobs.candidates.config import REMOVAL_REASONS, CandidateInputs, CandidatesConfig
from jobs.candidates.indexes import collect_indexes
from jobs.candidates.metrics import kept_metrics, retrieval_metrics
from jobs.candidates.pipeline import select_candidates, tagged_candidates
from jobs.candidates.requests import candidate_requests, tweet_pool_exclusions
from jobs.delta_io import overwrite_delta, read_delta
from orchestration.assets import written_table_result
from orchestration.dataclass_config import config_from_dataclass
from orchestration.resources import SparkResource, WarehouseResource

# The full user x candidate tables (`candidates`, `user_tweet_features`): not in the default build,
# whose `ranked_feeds` retrieves and scores in one pass; built on demand (job `candidate_tables`)
# for debugging and `homefeed eval candidates`.
CANDIDATE_TABLES_GROUP = "candidate_tables"
# `CandidateInputs` fields are named as the tables they hold.
CANDIDATE_INPUT_TABLES = [field.name for field in dataclasses.fields(CandidateInputs)]


class CandidatesParams(config_from_dataclass(CandidatesConfig)):
    """`jobs.candidates.config.CandidatesConfig`, settable in the launchpad."""


@dg.asset(name="candidates", group_name=CANDIDATE_TABLES_GROUP, kinds={"spark", "delta"}, deps=CANDIDATE_INPUT_TABLES)
def candidates_asset(
    context: dg.AssetExecutionContext, config: CandidatesParams, spark: SparkResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Per-user For You candidate pools from six sources, merged, filtered and interleaved."""
    session = spark.get_session()
    as_of = warehouse.now()
    settings = config.to_dataclass()
    inputs = CandidateInputs(
        **{name: read_delta(session, warehouse.table_path(name)) for name in CANDIDATE_INPUT_TABLES}
    )
    indexes = collect_indexes(inputs, as_of=as_of, config=settings)
    requests = candidate_requests(inputs, as_of=as_of, config=settings)
    # Counted while the table is written (one pass): rows per source before the filters, rows each
    # filter (and the total cap) removed, rows per source in the table.
    retrieved, kept = Observation("candidates_retrieved"), Observation("candidates_kept")
    tagged = tagged_candidates(requests, indexes, config=settings).observe(retrieved, *retrieval_metrics(settings))
    table = select_candidates(tagged, as_of=as_of).observe(kept, *kept_metrics(settings))
    overwrite_delta(table, warehouse.table_path("candidates"))
    counts = {**retrieved.get, **kept.get}
    pool = tweet_pool_exclusions(inputs.tweets, as_of=as_of, freshness_hours=settings.freshness_hours).first()
    context.log.info(f"candidates: tweet pool {pool.asDict()}")
    context.log.info(f"candidates: {counts}")
    return written_table_result(
        warehouse,
        "candidates",
        as_of=as_of.isoformat(),
        retrieved_per_source=dg.MetadataValue.json({s: counts[f"retrieved_{s}"] for s in settings.sources}),
        removed_by_filter=dg.MetadataValue.json({r: counts[f"removed_{r}"] for r in REMOVAL_REASONS}),
        kept_per_source=dg.MetadataValue.json({s: counts[f"kept_{s}"] for s in settings.sources}),
        tweet_pool=dg.MetadataValue.json(pool.asDict()),
        users=counts["users"],
        config=dg.MetadataValue.json(config.model_dump()),
    )


CANDIDATE_ASSETS = [candidates_asset]
