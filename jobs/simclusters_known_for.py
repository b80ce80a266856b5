"""SimClusters' KnownFor step: a seeded, fixed-K local-moving community detection on the producer
similarity graph, as Spark transforms (`detect_communities`).

Every parameter is explicit here; `jobs.simclusters.known_for` applies it with the defaults of
`SimClustersConfig`. Method and bounds: docs/simclusters.md.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

# Salts of the deterministic hashes (fixed: a rerun draws the same seeds and moves).
_SEED_SALT = 0x51C1_0002
_UPDATE_SALT = 0x51C1_0003


def undirected(similarity: DataFrame) -> DataFrame:
    """(src, dst, w): the similarity graph made symmetric (an edge kept by either end counts)."""
    both = similarity.select(
        F.col("producer_id").alias("src"), F.col("neighbor_id").alias("dst"), F.col("cosine").alias("w")
    ).unionByName(
        similarity.select(
            F.col("neighbor_id").alias("src"), F.col("producer_id").alias("dst"), F.col("cosine").alias("w")
        )
    )
    return both.filter(F.col("src") != F.col("dst")).groupBy("src", "dst").agg(F.max("w").alias("w"))


def _hash01(seed: int, salt: int, *cols: Column) -> Column:
    """A deterministic pseudo-random number in [0, 1) per row."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return F.pmod(h, F.lit(1 << 30)).cast("double") / float(1 << 30)


def seed_producers(graph: DataFrame, degrees: DataFrame, *, k: int, seed: int) -> DataFrame:
    """(producer_id, cluster_id): K seeds, cluster ids 0..K-1.

    A producer's key is (weighted degree, seeded hash). Seeds are first the producers whose key is
    the largest within two hops (pairwise at least three hops apart, so rarely in one community),
    then the 1-hop local maxima, then the rest, each by key; the first K are taken.
    """
    keyed = degrees.select(
        "producer_id",
        F.struct(
            F.col("degree"),
            _hash01(seed, _SEED_SALT, F.col("producer_id")).alias("h"),
            F.col("producer_id").alias("id"),
        ).alias("key"),
    )

    def neighbourhood_max(values: DataFrame, column: str) -> DataFrame:
        over_edges = (
            graph.join(
                values.select(F.col("producer_id").alias("dst"), F.col(column).alias("_v")), on="dst", how="inner"
            )
            .groupBy(F.col("src").alias("producer_id"))
            .agg(F.max("_v").alias("_nmax"))
        )
        return (
            values.join(over_edges, on="producer_id", how="left")
            .select("*", F.greatest(F.col(column), F.coalesce(F.col("_nmax"), F.col(column))).alias(f"{column}_max"))
            .drop("_nmax")
        )

    m1 = neighbourhood_max(keyed, "key")  # key_max: largest key within one hop
    m2 = neighbourhood_max(m1.select("producer_id", "key", F.col("key_max").alias("k1")), "k1")
    ranked = m2.join(m1.select("producer_id", "key_max"), on="producer_id", how="inner").select(
        "producer_id",
        "key",
        F.when(F.col("key") == F.col("k1_max"), 0).when(F.col("key") == F.col("key_max"), 1).otherwise(2).alias("tier"),
    )
    # K rows: numbered on the driver rather than by a window without partitions.
    first_k = ranked.orderBy(F.col("tier"), F.col("key").desc()).limit(k).select("producer_id").collect()
    return ranked.sparkSession.createDataFrame(
        [(row.producer_id, cluster_id) for cluster_id, row in enumerate(first_k)], "producer_id bigint, cluster_id int"
    )


def detect_communities(similarity: DataFrame, *, k: int, seed: int, iterations: int, resolution: float) -> DataFrame:
    """(producer_id, cluster_id, score): at most one of K communities per producer.

    A seeded, fixed-K local-moving community detection on the symmetrised similarity graph, in the
    spirit of SimClusters' Metropolis-Hastings sampler (which also proposes neighbours' communities
    and maximises within-community similarity), made deterministic: K seeds (`seed_producers`),
    then at most `iterations` rounds (fewer once no producer would move) in which every unassigned
    producer and a seeded random half of the assigned ones move to the neighbour community with
    the largest modularity gain

        gain(i, c) = w(i, c) - resolution * d(i) * D(c \\ i) / 2m

    (w(i, c): similarity from i to members of c, d(i): i's weighted degree, D: summed degrees of c's
    members, 2m: total degree); when no gain is positive a producer stays only where staying costs
    nothing (a seed still alone), else it leaves every community. `score` is the share of the
    producer's similarity that stays in its community, w(i, c) / d(i), in (0, 1]. Producers
    without a similarity edge, or alone in their community at the end, get no community.
    """
    spark = similarity.sparkSession
    graph = undirected(similarity).persist()
    degrees = graph.groupBy(F.col("src").alias("producer_id")).agg(F.sum("w").alias("degree")).localCheckpoint()
    total = degrees.agg(F.sum("degree")).first()[0]
    if not total:
        graph.unpersist()
        return spark.createDataFrame([], "producer_id bigint, cluster_id int, score double")
    two_m = float(total)
    seeds = seed_producers(graph, degrees, k=k, seed=seed)
    # One row per producer: its weighted degree and community (null: none). Small (one row per
    # producer), so it is broadcast into the joins with the edges.
    state = degrees.join(
        seeds.withColumnRenamed("cluster_id", "current"), on="producer_id", how="left"
    ).localCheckpoint()

    for iteration in range(iterations):
        step = _local_moving_round(graph, state, iteration=iteration, seed=seed, resolution=resolution, two_m=two_m)
        state = step.drop("unsettled")
        # A fixed point: no producer would move, whichever of them were drawn; stop early.
        if step.filter(F.col("unsettled")).isEmpty():
            log.info("known_for: no producer moves after round %d of %d", iteration + 1, iterations)
            break

    result = _final_membership(graph, state)
    graph.unpersist()
    return result


def _edge_weights(graph: DataFrame, state: DataFrame) -> DataFrame:
    """(src, cluster_id, w): one row per edge into a producer with a community."""
    members = state.filter(F.col("current").isNotNull()).select(
        F.col("producer_id").alias("dst"), F.col("current").alias("cluster_id")
    )
    return graph.join(F.broadcast(members), on="dst", how="inner").select("src", "cluster_id", "w")


def _local_moving_round(
    graph: DataFrame, state: DataFrame, *, iteration: int, seed: int, resolution: float, two_m: float
) -> DataFrame:
    """One round of `known_for`: (producer_id, degree, current, unsettled) after the drawn producers
    moved to their best community; `unsettled`: the producer would have moved if drawn."""
    cluster_degree = (
        state.filter(F.col("current").isNotNull())
        .groupBy(F.col("current").alias("cluster_id"))
        .agg(F.sum("degree").alias("cluster_degree"))
    )
    # Candidates: the neighbours' communities and the producer's own (w 0 when no neighbour
    # is in it, so that a seed is not left before its neighbours join). Partitioned by src
    # once, for both aggregations.
    own = state.filter(F.col("current").isNotNull()).select(
        F.col("producer_id").alias("src"), F.col("current").alias("cluster_id"), F.lit(0.0).alias("w")
    )
    candidates = (
        _edge_weights(graph, state)
        .unionByName(own)
        .repartition("src")
        .groupBy("src", "cluster_id")
        .agg(F.sum("w").alias("w_in"))
    )
    node = state.select(F.col("producer_id").alias("src"), "degree", "current")
    is_current = F.coalesce(F.col("current") == F.col("cluster_id"), F.lit(False))
    # Rounded so that the float summation order cannot flip a comparison between runs.
    gain = F.round(
        F.col("w_in")
        - F.lit(resolution)
        * F.col("degree")
        * (F.col("cluster_degree") - F.when(is_current, F.col("degree")).otherwise(0.0))
        / F.lit(two_m),
        12,
    )
    # The best community (largest gain, then the own one, then the lowest id) if its gain is
    # positive, or the own one at gain 0 (no better move); else none.
    best = (
        candidates.join(F.broadcast(cluster_degree), on="cluster_id", how="inner")
        .join(F.broadcast(node), on="src", how="inner")
        .select(
            "src",
            F.struct(gain.alias("gain"), is_current.alias("is_current"), (-F.col("cluster_id")).alias("neg_id")).alias(
                "option"
            ),
        )
        .groupBy("src")
        .agg(F.max("option").alias("best"))
        .filter((F.col("best.gain") > 0) | ((F.col("best.gain") == 0) & F.col("best.is_current")))
        .select(F.col("src").alias("producer_id"), (-F.col("best.neg_id")).alias("proposed"))
    )
    # Unassigned producers may always join; assigned ones move in a seeded random half of the
    # rounds (asynchronous updates, so that neighbours do not swap communities back and forth).
    moving = F.col("current").isNull() | (_hash01(seed, _UPDATE_SALT + iteration, F.col("producer_id")) < 0.5)
    return (
        state.join(best, on="producer_id", how="left")
        .select(
            "producer_id",
            "degree",
            F.when(moving, F.col("proposed")).otherwise(F.col("current")).alias("current"),
            (~F.col("proposed").eqNullSafe(F.col("current"))).alias("unsettled"),
        )
        .localCheckpoint()
    )


def _final_membership(graph: DataFrame, state: DataFrame) -> DataFrame:
    """(producer_id, cluster_id, score): each producer with a community and the share of its
    similarity that stays in it."""
    return (
        _edge_weights(graph, state)
        .join(F.broadcast(state.select(F.col("producer_id").alias("src"), "degree", "current")), on="src", how="inner")
        .filter(F.col("cluster_id") == F.col("current"))
        .groupBy("src", "cluster_id", "degree")
        .agg(F.sum("w").alias("w_in"))
        .select(
            F.col("src").cast("bigint").alias("producer_id"),
            F.col("cluster_id").cast("int"),
            (F.col("w_in") / F.col("degree")).cast("double").alias("score"),
        )
        .localCheckpoint()
    )
