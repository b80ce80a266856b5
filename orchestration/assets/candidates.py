"""Candidate generation asset: the `candidates` Delta table, per-user pools from six sources.

The transforms are `jobs.candidates`; the table and the sources are described in
docs/candidates.md.
"""


import dagster as dg
from pyspark.sql import Observation

from jobs import candidates as cand
from jobs.delta_io import overwrite_delta, read_delta
from orchestration.assets import written_table_result
from orchestration.resources import SparkResource, WarehouseResource

CANDIDATES_GROUP = "candidates"
# `CandidateInputs` fields are named as the tables they hold.
CANDIDATE_INPUT_TABLES = [field for field in cand.CandidateInputs.__dataclass_fields__]
DEFAULTS = cand.DEFAULTS


class CandidatesParams(dg.Config):
    """`jobs.candidates.CandidatesConfig`, settable in the launchpad (action lists stay at their defaults)."""

    freshness_hours: float = DEFAULTS.freshness_hours
    exclude_seen: bool = DEFAULTS.exclude_seen
    max_proofs: int = DEFAULTS.max_proofs
    max_candidates_per_user: int = DEFAULTS.max_candidates_per_user
    sources: list[str] = list(DEFAULTS.sources)
    recency_half_life_hours: float = DEFAULTS.recency_half_life_hours
    in_network_window_hours: float = DEFAULTS.in_network_window_hours
    in_network_top_k: int = DEFAULTS.in_network_top_k
    realgraph_floor: float = DEFAULTS.realgraph_floor
    uteg_followees: int = DEFAULTS.uteg_followees
    uteg_window_hours: float = DEFAULTS.uteg_window_hours
    uteg_top_k: int = DEFAULTS.uteg_top_k
    simclusters_clusters: int = DEFAULTS.simclusters_clusters
    simclusters_tweets_per_cluster: int = DEFAULTS.simclusters_tweets_per_cluster
    simclusters_top_k: int = DEFAULTS.simclusters_top_k
    twhin_top_k: int = DEFAULTS.twhin_top_k
    frs_accounts: int = DEFAULTS.frs_accounts
    frs_window_hours: float = DEFAULTS.frs_window_hours
    frs_top_k: int = DEFAULTS.frs_top_k
    popular_window_hours: float = DEFAULTS.popular_window_hours
    popular_half_life_hours: float = DEFAULTS.popular_half_life_hours
    popular_global_k: int = DEFAULTS.popular_global_k
    popular_per_community_k: int = DEFAULTS.popular_per_community_k
    popular_user_communities: int = DEFAULTS.popular_user_communities
    block_users: int = DEFAULTS.block_users
    twhin_block_scores: int = DEFAULTS.twhin_block_scores

    def to_config(self) -> cand.CandidatesConfig:
        values = self.model_dump()
        return cand.CandidatesConfig(**{**values, "sources": tuple(values["sources"])})


@dg.asset(name="candidates", group_name=CANDIDATES_GROUP, kinds={"spark", "delta"}, deps=CANDIDATE_INPUT_TABLES)
def candidates_asset(
    context: dg.AssetExecutionContext, config: CandidatesParams, spark: SparkResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Per-user For You candidate pools from six sources, merged, filtered and interleaved."""
    session = spark.get_session()
    as_of = warehouse.now()
    settings = config.to_config()
    inputs = cand.CandidateInputs(
        **{name: read_delta(session, warehouse.table_path(name)) for name in CANDIDATE_INPUT_TABLES}
    )
    indexes = cand.collect_indexes(inputs, as_of=as_of, config=settings)
    requests = cand.candidate_requests(inputs, as_of=as_of, config=settings)
    # Counted while the table is written (one pass): rows per source before the filters, rows each
    # filter (and the total cap) removed, rows per source in the table.
    retrieved, kept = Observation("candidates_retrieved"), Observation("candidates_kept")
    tagged = cand.tagged_candidates(requests, indexes, config=settings).observe(
        retrieved, *cand.retrieval_metrics(settings)
    )
    table = cand.select_candidates(tagged, as_of=as_of).observe(kept, *cand.kept_metrics(settings))
    overwrite_delta(table, warehouse.table_path("candidates"))
    counts = {**retrieved.get, **kept.get}
    pool = cand.tweet_pool_exclusions(inputs.tweets, as_of=as_of, freshness_hours=settings.freshness_hours).first()
    context.log.info(f"candidates: tweet pool {pool.asDict()}")
    context.log.info(f"candidates: {counts}")
    return written_table_result(
        warehouse,
        "candidates",
        as_of=as_of.isoformat(),
        retrieved_per_source=dg.MetadataValue.json({s: counts[f"retrieved_{s}"] for s in settings.sources}),
        removed_by_filter=dg.MetadataValue.json({r: counts[f"removed_{r}"] for r in cand.REMOVAL_REASONS}),
        kept_per_source=dg.MetadataValue.json({s: counts[f"kept_{s}"] for s in settings.sources}),
        tweet_pool=dg.MetadataValue.json(pool.asDict()),
        users=counts["users"],
        config=dg.MetadataValue.json(config.model_dump()),
    )


CANDIDATE_ASSETS = [candidates_asset]
