"""Feature tables: one Delta table per entity, as declared in features/registry.py, as of the build time."""

import dagster as dg

from features.registry import features_of_asset, registry_hash
from features.tables import (
    author_features,
    tweet_features,
    user_author_features,
    user_features,
)
from features.user_tweet import user_tweet_features
from jobs.delta_io import overwrite_delta, read_delta
from orchestration.assets import written_table_result
from orchestration.resources import SparkResource, WarehouseResource

FEATURES_GROUP = "features"
KINDS = {"spark", "delta"}


def _write(warehouse: WarehouseResource, name: str, table, as_of) -> dg.MaterializeResult:
    overwrite_delta(table, warehouse.table_path(name))
    return written_table_result(
        warehouse,
        name,
        as_of=as_of.isoformat(),
        features=len(features_of_asset(name)),
        registry_hash=registry_hash(),
    )


def _reader(spark: SparkResource, warehouse: WarehouseResource):
    session = spark.get_session()
    return lambda name: read_delta(session, warehouse.table_path(name))


@dg.asset(
    name="user_features",
    group_name=FEATURES_GROUP,
    kinds=KINDS,
    deps=["users", "follows", "mutual_follows", "tweets", "engagements", "social_actions"],
)
def user_features_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per user: account, follow-graph and recent activity features (engagement given, rates, recency)."""
    read, as_of = _reader(spark, warehouse), warehouse.now()
    table = user_features(
        read("users"),
        read("follows"),
        read("mutual_follows"),
        read("tweets"),
        read("engagements"),
        read("social_actions"),
        as_of=as_of,
    )
    return _write(warehouse, "user_features", table, as_of)


@dg.asset(
    name="author_features",
    group_name=FEATURES_GROUP,
    kinds=KINDS,
    deps=["users", "follows", "tweets", "engagements", "social_actions"],
)
def author_features_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per author: audience, posting rate, engagement received and its rates, reputation, blocks and mutes."""
    read, as_of = _reader(spark, warehouse), warehouse.now()
    table = author_features(
        read("users"), read("follows"), read("tweets"), read("engagements"), read("social_actions"), as_of=as_of
    )
    return _write(warehouse, "author_features", table, as_of)


@dg.asset(
    name="tweet_features", group_name=FEATURES_GROUP, kinds=KINDS, deps=["users", "follows", "tweets", "engagements"]
)
def tweet_features_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per recent live tweet: content flags, age, engagement counts in the last 1, 6 and 24 hours."""
    read, as_of = _reader(spark, warehouse), warehouse.now()
    table = tweet_features(read("users"), read("follows"), read("tweets"), read("engagements"), as_of=as_of)
    return _write(warehouse, "tweet_features", table, as_of)


@dg.asset(
    name="user_author_features",
    group_name=FEATURES_GROUP,
    kinds=KINDS,
    deps=["follows", "tweets", "engagements", "realgraph"],
)
def user_author_features_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per related (user, author): RealGraph score, follow edges, windowed and decayed interaction counts."""
    read, as_of = _reader(spark, warehouse), warehouse.now()
    table = user_author_features(read("follows"), read("tweets"), read("engagements"), read("realgraph"), as_of=as_of)
    return _write(warehouse, "user_author_features", table, as_of)


@dg.asset(
    name="user_tweet_features",
    group_name=FEATURES_GROUP,
    kinds=KINDS,
    deps=[
        "candidates",
        "simclusters_interested_in",
        "simclusters_tweet_embeddings",
        "twhin_user_embeddings",
        "twhin_tweet_embeddings",
        "tweets",
        "engagements",
        "follows",
    ],
)
def user_tweet_features_asset(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per candidate (user, tweet): SimClusters, TwHIN, content and topic similarity, source flags and scores, pool rank."""
    read, as_of = _reader(spark, warehouse), warehouse.now()
    table = user_tweet_features(
        read("candidates"),
        read("simclusters_interested_in"),
        read("simclusters_tweet_embeddings"),
        read("twhin_user_embeddings"),
        read("twhin_tweet_embeddings"),
        as_of=as_of,
        tweets=read("tweets"),
        engagements=read("engagements"),
        follows=read("follows"),
    )
    return _write(warehouse, "user_tweet_features", table, as_of)


FEATURE_ASSETS = [
    user_features_asset,
    author_features_asset,
    tweet_features_asset,
    user_author_features_asset,
    user_tweet_features_asset,
]
