"""Feature tables: one Delta table per entity, as declared in features/registry.py, as of the build time."""

import dagster as dg
from pyspark.sql import DataFrame

from features.registry import features_of_asset, registry_hash
from features.tables import (
    author_features,
    tweet_features,
    user_author_features,
    user_features,
)
from features.user_tweet import user_tweet_features
from orchestration.assets.candidates import CANDIDATE_TABLES_GROUP
from orchestration.resources import WarehouseResource

FEATURES_GROUP = "features"
KINDS = {"spark", "delta"}


def _feature_table(name: str, table: DataFrame, as_of) -> dg.Output[DataFrame]:
    metadata = {"as_of": as_of.isoformat(), "features": len(features_of_asset(name)), "registry_hash": registry_hash()}
    return dg.Output(table, metadata=metadata)


@dg.asset(name="user_features", group_name=FEATURES_GROUP, kinds=KINDS)
def user_features_asset(
    warehouse: WarehouseResource,
    users: DataFrame,
    follows: DataFrame,
    mutual_follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
) -> dg.Output[DataFrame]:
    """Per user: account, follow-graph and recent activity features (engagement given, rates, recency)."""
    as_of = warehouse.now()
    table = user_features(users, follows, mutual_follows, tweets, engagements, social_actions, as_of=as_of)
    return _feature_table("user_features", table, as_of)


@dg.asset(name="author_features", group_name=FEATURES_GROUP, kinds=KINDS)
def author_features_asset(
    warehouse: WarehouseResource,
    users: DataFrame,
    follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
) -> dg.Output[DataFrame]:
    """Per author: audience, posting rate, engagement received and its rates, reputation, blocks and mutes."""
    as_of = warehouse.now()
    table = author_features(users, follows, tweets, engagements, social_actions, as_of=as_of)
    return _feature_table("author_features", table, as_of)


@dg.asset(name="tweet_features", group_name=FEATURES_GROUP, kinds=KINDS)
def tweet_features_asset(
    warehouse: WarehouseResource, users: DataFrame, follows: DataFrame, tweets: DataFrame, engagements: DataFrame
) -> dg.Output[DataFrame]:
    """Per recent live tweet: content flags, age, engagement counts in the last 1, 6 and 24 hours."""
    as_of = warehouse.now()
    return _feature_table("tweet_features", tweet_features(users, follows, tweets, engagements, as_of=as_of), as_of)


@dg.asset(name="user_author_features", group_name=FEATURES_GROUP, kinds=KINDS)
def user_author_features_asset(
    warehouse: WarehouseResource, follows: DataFrame, tweets: DataFrame, engagements: DataFrame, realgraph: DataFrame
) -> dg.Output[DataFrame]:
    """Per related (user, author): RealGraph score, follow edges, windowed and decayed interaction counts."""
    as_of = warehouse.now()
    table = user_author_features(follows, tweets, engagements, realgraph, as_of=as_of)
    return _feature_table("user_author_features", table, as_of)


@dg.asset(name="user_tweet_features", group_name=CANDIDATE_TABLES_GROUP, kinds=KINDS)
def user_tweet_features_asset(
    warehouse: WarehouseResource,
    candidates: DataFrame,
    simclusters_interested_in: DataFrame,
    simclusters_tweet_embeddings: DataFrame,
    twhin_user_embeddings: DataFrame,
    twhin_tweet_embeddings: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    follows: DataFrame,
) -> dg.Output[DataFrame]:
    """Per candidate (user, tweet): SimClusters, TwHIN, content and topic similarity, source flags and scores, pool rank."""
    as_of = warehouse.now()
    table = user_tweet_features(
        candidates,
        simclusters_interested_in,
        simclusters_tweet_embeddings,
        twhin_user_embeddings,
        twhin_tweet_embeddings,
        as_of=as_of,
        tweets=tweets,
        engagements=engagements,
        follows=follows,
    )
    return _feature_table("user_tweet_features", table, as_of)


FEATURE_ASSETS = [
    user_features_asset,
    author_features_asset,
    tweet_features_asset,
    user_author_features_asset,
    user_tweet_features_asset,
]
