"""SimClusters v2 assets: one Delta table each, built from the bronze follows and engagements.

Parameters are `jobs.simclusters.DEFAULTS`; the method is described in docs/simclusters.md. The
assets up to InterestedIn are declared by factories, for the main build and the training set's
representation snapshots (`orchestration.asset_variants`).
"""

import dagster as dg

from jobs import simclusters as sc
from jobs.delta_io import overwrite_delta, read_delta
from orchestration.asset_variants import MAIN, AssetVariant
from orchestration.assets import written_table_result
from orchestration.resources import SparkResource, WarehouseResource

SIMCLUSTERS_GROUP = "simclusters"
CONFIG = sc.DEFAULTS


def build_producer_similarity_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_producer_similarity"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        deps=variant.keys(["follows"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_producer_similarity(
        context: dg.AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Cosine similarity of producers' follower sets, pruned to each producer's best neighbours."""
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        follows = read_delta(session, warehouse.table_path("follows"))
        similarity = sc.producer_similarity(
            follows,
            min_followers=CONFIG.min_followers,
            min_cosine=CONFIG.min_cosine,
            max_neighbors=CONFIG.max_neighbors,
            max_producers=CONFIG.max_producers,
            max_producers_per_follower=CONFIG.max_producers_per_follower,
        )
        overwrite_delta(similarity, warehouse.table_path("simclusters_producer_similarity"))
        return written_table_result(
            warehouse,
            "simclusters_producer_similarity",
            min_followers=CONFIG.min_followers,
            max_producers_per_follower=CONFIG.max_producers_per_follower,
            min_cosine=CONFIG.min_cosine,
            max_neighbors=CONFIG.max_neighbors,
        )

    return simclusters_producer_similarity


def build_known_for_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_known_for"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        deps=variant.keys(["simclusters_producer_similarity"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_known_for(
        context: dg.AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """KnownFor: at most one of K communities per producer, detected on the similarity graph."""
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        similarity = read_delta(session, warehouse.table_path("simclusters_producer_similarity"))
        known_for = sc.known_for(
            similarity, k=CONFIG.k, seed=CONFIG.seed, iterations=CONFIG.iterations, resolution=CONFIG.resolution
        )
        path = warehouse.table_path("simclusters_known_for")
        overwrite_delta(known_for, path)
        clusters = read_delta(session, path).select("cluster_id").distinct().count()
        return written_table_result(
            warehouse, "simclusters_known_for", k=CONFIG.k, nonempty_clusters=clusters, seed=CONFIG.seed
        )

    return simclusters_known_for


def build_interested_in_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_interested_in"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        deps=variant.keys(["follows", "simclusters_known_for"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_interested_in(
        context: dg.AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """InterestedIn: each user's follows times KnownFor, L2-normalised, top clusters with social proof."""
        warehouse = variant.warehouse(context, warehouse)
        session = spark.get_session()
        interested = sc.interested_in(
            read_delta(session, warehouse.table_path("follows")),
            read_delta(session, warehouse.table_path("simclusters_known_for")),
            top_clusters=CONFIG.top_clusters,
            min_social_proof=CONFIG.min_social_proof,
        )
        overwrite_delta(interested, warehouse.table_path("simclusters_interested_in"))
        return written_table_result(warehouse, "simclusters_interested_in", min_social_proof=CONFIG.min_social_proof)

    return simclusters_interested_in


@dg.asset(group_name=SIMCLUSTERS_GROUP, kinds={"spark", "delta"}, deps=["follows", "simclusters_interested_in"])
def simclusters_producer_embeddings(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Producer embeddings: cosine of each producer's followers with each community's InterestedIn."""
    session = spark.get_session()
    embeddings = sc.producer_embeddings(
        read_delta(session, warehouse.table_path("follows")),
        read_delta(session, warehouse.table_path("simclusters_interested_in")),
        top_clusters=CONFIG.producer_top_clusters,
        min_followers=CONFIG.producer_min_followers,
    )
    overwrite_delta(embeddings, warehouse.table_path("simclusters_producer_embeddings"))
    return written_table_result(warehouse, "simclusters_producer_embeddings")


@dg.asset(
    group_name=SIMCLUSTERS_GROUP,
    kinds={"spark", "delta"},
    deps=["engagements", "tweets", "simclusters_interested_in"],
)
def simclusters_tweet_embeddings(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Tweet embeddings: time-decayed sum of the InterestedIn vectors of each tweet's engagers."""
    session = spark.get_session()
    as_of = warehouse.now()
    embeddings = sc.tweet_embeddings(
        read_delta(session, warehouse.table_path("engagements")),
        read_delta(session, warehouse.table_path("simclusters_interested_in")),
        as_of=as_of,
        half_life_hours=CONFIG.half_life_hours,
        actions=CONFIG.tweet_actions,
        top_clusters=CONFIG.tweet_top_clusters,
        tweets=read_delta(session, warehouse.table_path("tweets")),
    )
    overwrite_delta(embeddings, warehouse.table_path("simclusters_tweet_embeddings"))
    return written_table_result(
        warehouse,
        "simclusters_tweet_embeddings",
        as_of=as_of.isoformat(),
        half_life_hours=CONFIG.half_life_hours,
        actions=", ".join(CONFIG.tweet_actions),
    )


@dg.asset(group_name=SIMCLUSTERS_GROUP, kinds={"spark", "delta"}, deps=["simclusters_tweet_embeddings"])
def simclusters_top_tweets_per_cluster(spark: SparkResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The retrieval index: each community's highest-scoring tweets, ranked."""
    session = spark.get_session()
    index = sc.top_tweets_per_cluster(
        read_delta(session, warehouse.table_path("simclusters_tweet_embeddings")),
        per_cluster=CONFIG.tweets_per_cluster,
    )
    overwrite_delta(index, warehouse.table_path("simclusters_top_tweets_per_cluster"))
    return written_table_result(warehouse, "simclusters_top_tweets_per_cluster", per_cluster=CONFIG.tweets_per_cluster)


simclusters_assets = [
    build_producer_similarity_asset(),
    build_known_for_asset(),
    build_interested_in_asset(),
    simclusters_producer_embeddings,
    simclusters_tweet_embeddings,
    simclusters_top_tweets_per_cluster,
]
