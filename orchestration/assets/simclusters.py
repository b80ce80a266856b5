"""SimClusters v2 assets: one Delta table each, built from the bronze follows and engagements.

Parameters are `jobs.simclusters.DEFAULTS`; the method is described in docs/simclusters.md. The
assets up to InterestedIn are declared by factories, for the main build and the training set's
representation snapshots (`orchestration.asset_variants`).
"""

import dagster as dg
from pyspark.sql import DataFrame

from jobs import simclusters as sc
from orchestration.asset_variants import MAIN, AssetVariant
from orchestration.resources import WarehouseResource

SIMCLUSTERS_GROUP = "simclusters"
CONFIG = sc.DEFAULTS


def build_producer_similarity_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_producer_similarity"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        ins=variant.ins(["follows"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_producer_similarity(follows: DataFrame) -> dg.Output[DataFrame]:
        """Cosine similarity of producers' follower sets, pruned to each producer's best neighbours."""
        similarity = sc.producer_similarity(
            follows,
            min_followers=CONFIG.min_followers,
            min_cosine=CONFIG.min_cosine,
            max_neighbors=CONFIG.max_neighbors,
            max_producers=CONFIG.max_producers,
            max_producers_per_follower=CONFIG.max_producers_per_follower,
        )
        return dg.Output(
            similarity,
            metadata={
                "min_followers": CONFIG.min_followers,
                "max_producers_per_follower": CONFIG.max_producers_per_follower,
                "min_cosine": CONFIG.min_cosine,
                "max_neighbors": CONFIG.max_neighbors,
            },
        )

    return simclusters_producer_similarity


def build_known_for_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_known_for"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        ins=variant.ins(["simclusters_producer_similarity"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_known_for(simclusters_producer_similarity: DataFrame) -> dg.Output[DataFrame]:
        """KnownFor: at most one of K communities per producer, detected on the similarity graph."""
        known_for = sc.known_for(
            simclusters_producer_similarity,
            k=CONFIG.k,
            seed=CONFIG.seed,
            iterations=CONFIG.iterations,
            resolution=CONFIG.resolution,
        ).localCheckpoint()  # counted here and written by the IO manager: detected once
        clusters = known_for.select("cluster_id").distinct().count()
        return dg.Output(known_for, metadata={"k": CONFIG.k, "nonempty_clusters": clusters, "seed": CONFIG.seed})

    return simclusters_known_for


def build_interested_in_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.asset(
        key=variant.key("simclusters_interested_in"),
        group_name=variant.group(SIMCLUSTERS_GROUP),
        kinds={"spark", "delta"},
        ins=variant.ins(["follows", "simclusters_known_for"]),
        partitions_def=variant.partitions_def,
    )
    def simclusters_interested_in(follows: DataFrame, simclusters_known_for: DataFrame) -> dg.Output[DataFrame]:
        """InterestedIn: each user's follows times KnownFor, L2-normalised, top clusters with social proof."""
        interested = sc.interested_in(
            follows,
            simclusters_known_for,
            top_clusters=CONFIG.top_clusters,
            min_social_proof=CONFIG.min_social_proof,
        )
        return dg.Output(interested, metadata={"min_social_proof": CONFIG.min_social_proof})

    return simclusters_interested_in


@dg.asset(group_name=SIMCLUSTERS_GROUP, kinds={"spark", "delta"})
def simclusters_producer_embeddings(follows: DataFrame, simclusters_interested_in: DataFrame) -> dg.Output[DataFrame]:
    """Producer embeddings: cosine of each producer's followers with each community's InterestedIn."""
    embeddings = sc.producer_embeddings(
        follows,
        simclusters_interested_in,
        top_clusters=CONFIG.producer_top_clusters,
        min_followers=CONFIG.producer_min_followers,
    )
    return dg.Output(embeddings)


@dg.asset(group_name=SIMCLUSTERS_GROUP, kinds={"spark", "delta"})
def simclusters_tweet_embeddings(
    warehouse: WarehouseResource, engagements: DataFrame, tweets: DataFrame, simclusters_interested_in: DataFrame
) -> dg.Output[DataFrame]:
    """Tweet embeddings: time-decayed sum of the InterestedIn vectors of each tweet's engagers."""
    as_of = warehouse.now()
    embeddings = sc.tweet_embeddings(
        engagements,
        simclusters_interested_in,
        as_of=as_of,
        half_life_hours=CONFIG.half_life_hours,
        actions=CONFIG.tweet_actions,
        top_clusters=CONFIG.tweet_top_clusters,
        tweets=tweets,
    )
    return dg.Output(
        embeddings,
        metadata={
            "as_of": as_of.isoformat(),
            "half_life_hours": CONFIG.half_life_hours,
            "actions": ", ".join(CONFIG.tweet_actions),
        },
    )


@dg.asset(group_name=SIMCLUSTERS_GROUP, kinds={"spark", "delta"})
def simclusters_top_tweets_per_cluster(simclusters_tweet_embeddings: DataFrame) -> dg.Output[DataFrame]:
    """The retrieval index: each community's highest-scoring tweets, ranked."""
    index = sc.top_tweets_per_cluster(simclusters_tweet_embeddings, per_cluster=CONFIG.tweets_per_cluster)
    return dg.Output(index, metadata={"per_cluster": CONFIG.tweets_per_cluster})


simclusters_assets = [
    build_producer_similarity_asset(),
    build_known_for_asset(),
    build_interested_in_asset(),
    simclusters_producer_embeddings,
    simclusters_tweet_embeddings,
    simclusters_top_tweets_per_cluster,
]
