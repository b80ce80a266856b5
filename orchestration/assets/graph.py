"""Follow-graph expansions and RealGraph: user -> user representations read by candidate sources.
RealGraph's two assets are declared by factories, for the main build and the training set's
representation snapshots (`orchestration.asset_variants`)."""

import dagster as dg
from pyspark.sql import DataFrame

from features.realgraph import (
    RealGraphConfig,
    interaction_features,
    top_k_per_user,
    user_author_interactions,
)
from jobs.follow_graph import TwoHopConfig, follow_graph_two_hop, mutual_follows, user_follow_counts
from models.realgraph_model import score_pairs, train_on_recent_periods
from orchestration.asset_variants import MAIN, AssetVariant
from orchestration.dataclass_config import config_from_dataclass
from orchestration.resources import WarehouseResource

GRAPH_GROUP = "graph"


class TwoHopParams(config_from_dataclass(TwoHopConfig)):
    """`jobs.follow_graph.TwoHopConfig`, settable in the launchpad."""


@dg.asset(name="follow_graph_two_hop", group_name=GRAPH_GROUP, kinds={"spark", "delta"})
def follow_graph_two_hop_asset(config: TwoHopParams, follows: DataFrame) -> dg.Output[DataFrame]:
    """Accounts followed by a user's followees, with social proof, top-k per user (bounded fan-out)."""
    return dg.Output(follow_graph_two_hop(follows, config=config.to_dataclass()), metadata=config.model_dump())


@dg.asset(name="mutual_follows", group_name=GRAPH_GROUP, kinds={"spark", "delta"})
def mutual_follows_asset(follows: DataFrame) -> dg.Output[DataFrame]:
    """Pairs who follow each other, one row per direction."""
    return dg.Output(mutual_follows(follows))


@dg.asset(name="user_follow_counts", group_name=GRAPH_GROUP, kinds={"spark", "delta"})
def user_follow_counts_asset(users: DataFrame, follows: DataFrame, mutual_follows: DataFrame) -> dg.Output[DataFrame]:
    """Per user: accounts followed, followers, mutual follows."""
    return dg.Output(user_follow_counts(users, follows, mutual_follows))


class RealGraphParams(config_from_dataclass(RealGraphConfig, exclude=("windows_days", "actions"))):
    """`features.realgraph.RealGraphConfig` (but the windows and actions, which name the columns of
    `realgraph_features` that its data-quality spec expects from the defaults), and the model's seed."""

    seed: int = 7


def build_realgraph_features_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("realgraph_features"),
        group_name=variant.group(GRAPH_GROUP),
        kinds={"spark", "delta"},
        ins=variant.ins(["engagements", "tweets", "follows"]),
        partitions_def=variant.partitions_def,
    )
    def realgraph_features(
        context: dg.AssetExecutionContext,
        config: RealGraphParams,
        warehouse: WarehouseResource,
        engagements: DataFrame,
        tweets: DataFrame,
        follows: DataFrame,
    ) -> dg.Output[DataFrame]:
        """Per (user, author): counts of each action and of exposures in several windows, decayed counts, the follow edge."""
        rg_config = config.to_dataclass()
        interactions = user_author_interactions(engagements, tweets, actions=rg_config.actions)
        cutoff = variant.warehouse(context, warehouse).now()
        features = interaction_features(interactions, follows, cutoff=cutoff, config=rg_config)
        return dg.Output(features, metadata={"half_life_days": config.half_life_days})

    return realgraph_features


def build_realgraph_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("realgraph"),
        group_name=variant.group(GRAPH_GROUP),
        kinds={"spark", "xgboost", "delta"},
        ins=variant.ins(["realgraph_features", "engagements", "tweets", "follows"]),
        partitions_def=variant.partitions_def,
    )
    def realgraph(
        context: dg.AssetExecutionContext,
        config: RealGraphParams,
        warehouse: WarehouseResource,
        realgraph_features: DataFrame,
        engagements: DataFrame,
        tweets: DataFrame,
        follows: DataFrame,
    ) -> dg.Output[DataFrame]:
        """User -> author interaction strength: a model of next-period interaction over the counts, top-k per user."""
        rg_config = config.to_dataclass()
        interactions = user_author_interactions(engagements, tweets, actions=rg_config.actions).cache()
        model = train_on_recent_periods(
            interactions, follows, as_of=variant.warehouse(context, warehouse).now(), config=rg_config, seed=config.seed
        )
        interactions.unpersist()
        scored = score_pairs(realgraph_features, model)
        return dg.Output(
            top_k_per_user(scored, k=rg_config.top_k),
            metadata={
                "train_rows": model.train_rows,
                "train_positive_rate": round(model.positive_rate, 4),
                "top_features": dg.MetadataValue.json(model.feature_importance),
            },
        )

    return realgraph


graph_assets = [
    follow_graph_two_hop_asset,
    mutual_follows_asset,
    user_follow_counts_asset,
    build_realgraph_features_asset(),
    build_realgraph_asset(),
]
