"""The training set's representation snapshots: RealGraph, SimClusters InterestedIn and the TwHIN
embeddings rebuilt from the raw input as known at a cut, one partition of `representations_as_of`
per cut (group `training_representations`, keys `as_of/<table>`).

They are the main assets declared again by the same factories (`orchestration.asset_variants`),
upstream of the four tables the training set reads: the raw input cut at the partition's moment
(`as_of/raw_input`, whose metadata holds a fingerprint of the input and the cut), the bronze tables
built from it, and the graph, SimClusters and TwHIN assets those four need. They run without the
data-quality checks (their source, the raw input, was checked by the main build's).
"""

import dagster as dg

from core.contract import RAW_TABLES_BY_NAME
from orchestration.asset_variants import RAW_INPUT, SNAPSHOT, SNAPSHOT_GROUP
from orchestration.assets.graph import build_realgraph_asset, build_realgraph_features_asset
from orchestration.assets.ingestion import build_ingestion_asset
from orchestration.assets.simclusters import (
    build_interested_in_asset,
    build_known_for_asset,
    build_producer_similarity_asset,
)
from orchestration.assets.twhin import build_twhin_asset
from orchestration.raw_cut import truncate_raw_input
from orchestration.resources import WarehouseResource

# The bronze tables upstream of the representations (follows, engagements, tweets and what they reference).
SNAPSHOT_BRONZE_TABLES = ("users", "tweets", "follows", "engagements")


@dg.asset(
    key=SNAPSHOT.key(RAW_INPUT), group_name=SNAPSHOT_GROUP, kinds={"parquet"}, partitions_def=SNAPSHOT.partitions_def
)
def raw_input_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The raw input as known at the cut: rows stamped later dropped, later deletions undone."""
    snapshot = SNAPSHOT.warehouse(context, warehouse)
    out_dir, fingerprint = truncate_raw_input(snapshot.source_raw_dir, snapshot.raw_dir, cutoff=snapshot.cut)
    return dg.MaterializeResult(
        metadata={
            "fingerprint": fingerprint,
            "cut": snapshot.cut.isoformat(),
            "source": dg.MetadataValue.path(str(snapshot.source_raw_dir)),
            "path": dg.MetadataValue.path(str(out_dir)),
        }
    )


REPRESENTATION_SNAPSHOT_ASSETS = [
    raw_input_snapshot,
    *[build_ingestion_asset(RAW_TABLES_BY_NAME[name], SNAPSHOT) for name in SNAPSHOT_BRONZE_TABLES],
    build_realgraph_features_asset(SNAPSHOT),
    build_realgraph_asset(SNAPSHOT),
    build_producer_similarity_asset(SNAPSHOT),
    build_known_for_asset(SNAPSHOT),
    build_interested_in_asset(SNAPSHOT),
    build_twhin_asset(SNAPSHOT),
]
