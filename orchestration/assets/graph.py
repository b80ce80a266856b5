"""Follow-graph expansions and RealGraph: user -> user representations read by candidate sources.
RealGraph's two assets are declared by factories, for the main build and the training set's
representation snapshots (`orchestration.asset_variants`)."""

import dagster as dg

from features.realgraph import (
    RealGraphConfig,
    interaction_features,
    top_k_per_user,
    user_author_interactions,
)
from jobs.delta_io import overwrite_delta, read_delta
from jobs.follow_graph import TwoHopConfig, follow_graph_two_hop, mutual_follows, user_follow_counts
from models.realgraph_model import score_pairs, train_on_recent_periods
from orchestration.asset_variants import MAIN, AssetVariant, AssetWarehouse
from orchestration.assets import written_table_result
from orchestration.dataclass_config import config_from_dataclass
from orchestration.resources import SparkResource, WarehouseResource

GRAPH_GROUP = "graph"


class TwoHopParams(config_from_dataclass(TwoHopConfig)):
    """`jobs.follow_graph.TwoHopConfig`, settable in the launchpad."""


@dg.asset(name="follow_graph_two_hop", group_name=GRAPH_GROUP, kinds={"spark", "delta"}, deps=["follows"])
def follow_graph_two_hop_asset(
    config: TwoHopParams, spark: SparkResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Accounts followed by a user's followees, with social proof, top-k per user (bounded fan-out)."""
    session = spark.get_session()
    follows = read_delta(session, warehouse.table_path("follows"))
    two_hop = follow_graph_two_hop(follows, config=config.to_dataclass())
    overwrite_delta(two_hop, warehouse.table_path("follow_graph_two_hop"))
    return written_table_result(warehouse, "follow_graph_two_hop", **config.model_dump())


@dg.asset(name="mutual_follows", group_name=GRAPH_GROUP, kinds={"spark", "delta"}, deps=["follows"])
def mutual_follows_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Pairs who follow each other, one row per direction."""
    session = spark.get_session()
    overwrite_delta(
        mutual_follows(read_delta(session, warehouse.table_path("follows"))), warehouse.table_path("mutual_follows")
    )
    return written_table_result(warehouse, "mutual_follows")


@dg.asset(
    name="user_follow_counts",
    group_name=GRAPH_GROUP,
    kinds={"spark", "delta"},
    deps=["users", "follows", "mutual_follows"],
)
def user_follow_counts_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per user: accounts followed, followers, mutual follows."""
    session = spark.get_session()
    counts = user_follow_counts(
        read_delta(session, warehouse.table_path("users")),
        read_delta(session, warehouse.table_path("follows")),
        read_delta(session, warehouse.table_path("mutual_follows")),
    )
    overwrite_delta(counts, warehouse.table_path("user_follow_counts"))
    return written_table_result(warehouse, "user_follow_counts")


class RealGraphParams(config_from_dataclass(RealGraphConfig, exclude=("windows_days", "actions"))):
    """`features.realgraph.RealGraphConfig` (but the windows and actions, which name the columns of
    `realgraph_features` that its data-quality spec expects from the defaults), and the model's seed."""

    seed: int = 7


def _interactions_and_follows(session, warehouse: AssetWarehouse, config: RealGraphConfig):
    interactions = user_author_interactions(
        read_delta(session, warehouse.table_path("engagements")),
        read_delta(session, warehouse.table_path("tweets")),
        actions=config.actions,
    )
    return interactions, read_delta(session, warehouse.table_path("follows"))


def build_realgraph_features_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("realgraph_features"),
        group_name=variant.group(GRAPH_GROUP),
        kinds={"spark", "delta"},
        deps=variant.keys(["engagements", "tweets", "follows"]),
        partitions_def=variant.partitions_def,
    )
    def realgraph_features(
        context: dg.AssetExecutionContext, config: RealGraphParams, spark: SparkResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Per (user, author): counts of each action and of exposures in several windows, decayed counts, the follow edge."""
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        rg_config = config.to_dataclass()
        interactions, follows = _interactions_and_follows(session, warehouse, rg_config)
        features = interaction_features(interactions, follows, cutoff=warehouse.now(), config=rg_config)
        overwrite_delta(features, warehouse.table_path("realgraph_features"))
        return written_table_result(warehouse, "realgraph_features", half_life_days=config.half_life_days)

    return realgraph_features


def build_realgraph_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("realgraph"),
        group_name=variant.group(GRAPH_GROUP),
        kinds={"spark", "xgboost", "delta"},
        deps=variant.keys(["realgraph_features", "engagements", "tweets", "follows"]),
        partitions_def=variant.partitions_def,
    )
    def realgraph(
        context: dg.AssetExecutionContext, config: RealGraphParams, spark: SparkResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """User -> author interaction strength: a model of next-period interaction over the counts, top-k per user."""
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        rg_config = config.to_dataclass()
        interactions, follows = _interactions_and_follows(session, warehouse, rg_config)
        interactions = interactions.cache()
        model = train_on_recent_periods(
            interactions, follows, as_of=warehouse.now(), config=rg_config, seed=config.seed
        )
        interactions.unpersist()
        scored = score_pairs(read_delta(session, warehouse.table_path("realgraph_features")), model)
        overwrite_delta(top_k_per_user(scored, k=rg_config.top_k), warehouse.table_path("realgraph"))
        return written_table_result(
            warehouse,
            "realgraph",
            train_rows=model.train_rows,
            train_positive_rate=round(model.positive_rate, 4),
            top_features=dg.MetadataValue.json(model.feature_importance),
        )

    return realgraph


graph_assets = [
    follow_graph_two_hop_asset,
    mutual_follows_asset,
    user_follow_counts_asset,
    build_realgraph_features_asset(),
    build_realgraph_asset(),
]
