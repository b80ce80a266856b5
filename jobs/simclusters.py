"""SimClusters v2 as Spark transforms: producer similarity, KnownFor, InterestedIn, producer and tweet
embeddings, the per-cluster tweet index, and the evaluation helpers (follow candidates, KnownFor
quality).

After Twitter's SimClusters (KDD 2020; twitter/the-algorithm `src/scala/com/twitter/simclusters_v2`):

1. producers (accounts with enough followers) are compared by the cosine similarity of their follower
   sets, keeping each producer's strongest neighbours;
2. KnownFor: community detection on that similarity graph, at most one community per producer
   (jobs/simclusters_known_for.py);
3. InterestedIn: a user's follows multiplied by KnownFor, normalised, sparse;
4. producer embeddings: how much each community's InterestedIn overlaps a producer's followers;
5. tweet embeddings: the time-decayed sum of the InterestedIn vectors of the tweet's engagers;
6. per community, the tweets with the highest scores: the retrieval index.

Every transform is a pure `DataFrame -> DataFrame` function with keyword-only parameters whose
defaults live in `SimClustersConfig`; reading and writing happen in
`orchestration/assets/simclusters.py`. Method choices and bounds: docs/simclusters.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.simclusters_known_for import detect_communities


@dataclass(frozen=True)
class SimClustersConfig:
    # --- producer similarity ---
    # Accounts need this many followers to be producers (be compared, get a KnownFor cluster).
    min_followers: int = 10
    # At most this many producers, the most-followed first (ties by id): bounds the graph's size.
    max_producers: int = 100_000
    # The fan-out bound: of a follower's producers, at most this many (a deterministic hash sample)
    # enter the pair generation, so one follower contributes at most C*(C-1)/2 pairs.
    max_producers_per_follower: int = 50
    # Edges with a lower cosine are dropped, and each producer keeps its best `max_neighbors`.
    min_cosine: float = 0.05
    max_neighbors: int = 100
    # --- KnownFor ---
    k: int = 1000
    seed: int = 7
    iterations: int = 12
    # Modularity resolution: higher makes smaller, more numerous-in-effect communities.
    resolution: float = 1.0
    # --- InterestedIn ---
    top_clusters: int = 50
    min_social_proof: int = 2
    # --- producer embeddings ---
    producer_top_clusters: int = 20
    producer_min_followers: int = 1
    # --- tweet embeddings and the index ---
    half_life_hours: float = 8.0
    tweet_actions: tuple[str, ...] = ("like", "retweet", "reply", "quote")
    tweet_top_clusters: int = 20
    tweets_per_cluster: int = 500


DEFAULTS = SimClustersConfig()

# Salt of the deterministic fan-out hash (fixed: a rerun samples the same pairs); KnownFor's are in
# jobs/simclusters_known_for.py.
_FANOUT_SALT = 0x51C1_0001


# ---------------------------------------------------------------------------------------------
# 1. Producer-producer similarity
# ---------------------------------------------------------------------------------------------


def producers(
    follows: DataFrame,
    *,
    min_followers: int = DEFAULTS.min_followers,
    max_producers: int = DEFAULTS.max_producers,
) -> DataFrame:
    """(producer_id, followers): accounts with >= min_followers followers, the max_producers most
    followed (ties by id)."""
    counts = (
        follows.groupBy(F.col("followee_id").alias("producer_id"))
        .agg(F.count(F.lit(1)).alias("followers"))
        .filter(F.col("followers") >= min_followers)
    )
    return counts.orderBy(F.col("followers").desc(), F.col("producer_id")).limit(max_producers)


def producer_similarity(
    follows: DataFrame,
    *,
    min_followers: int = DEFAULTS.min_followers,
    min_cosine: float = DEFAULTS.min_cosine,
    max_neighbors: int = DEFAULTS.max_neighbors,
    max_producers: int = DEFAULTS.max_producers,
    max_producers_per_follower: int = DEFAULTS.max_producers_per_follower,
) -> DataFrame:
    """(producer_id, neighbor_id, cosine): cosine similarity of producers' follower sets.

    Producers are `producers(...)`. Each follower's row of the follower x producer matrix is cut to
    at most `max_producers_per_follower` producers (those with the smallest salted hash of the
    pair: a deterministic uniform sample), and the cosine is exact on that
    bounded matrix: |F'(a) & F'(b)| / sqrt(|F'(a)| |F'(b)|) with F' the sampled follower sets.
    Both directions of an edge are rows; edges below `min_cosine` are dropped and each producer
    keeps its `max_neighbors` best (ties by neighbour id).
    """
    eligible = producers(follows, min_followers=min_followers, max_producers=max_producers)
    edges = follows.select(F.col("follower_id"), F.col("followee_id").alias("producer_id")).join(
        eligible.select("producer_id"), on="producer_id", how="inner"
    )
    by_hash = Window.partitionBy("follower_id").orderBy(F.col("_h"), F.col("producer_id"))
    sampled = (
        edges.withColumn("_h", F.xxhash64(F.lit(_FANOUT_SALT), F.col("follower_id"), F.col("producer_id")))
        .withColumn("_r", F.row_number().over(by_hash))
        .filter(F.col("_r") <= max_producers_per_follower)
        .select("follower_id", "producer_id")
        # Read three times below; a local checkpoint (unlike a cache) is freed once unreferenced.
        .localCheckpoint()
    )
    norms = sampled.groupBy("producer_id").agg(F.count(F.lit(1)).alias("n"))
    left = sampled.select(F.col("follower_id"), F.col("producer_id").alias("a"))
    right = sampled.select(F.col("follower_id"), F.col("producer_id").alias("b"))
    common = (
        left.join(right, on="follower_id", how="inner")
        .filter(F.col("a") < F.col("b"))
        .groupBy("a", "b")
        .agg(F.count(F.lit(1)).alias("common"))
    )
    na = norms.select(F.col("producer_id").alias("a"), F.col("n").alias("na"))
    nb = norms.select(F.col("producer_id").alias("b"), F.col("n").alias("nb"))
    cosine = (
        common.join(na, on="a", how="inner")
        .join(nb, on="b", how="inner")
        .select("a", "b", (F.col("common") / F.sqrt(F.col("na") * F.col("nb"))).alias("cosine"))
        .filter(F.col("cosine") >= min_cosine)
    )
    both = cosine.select(F.col("a").alias("producer_id"), F.col("b").alias("neighbor_id"), "cosine").unionByName(
        cosine.select(F.col("b").alias("producer_id"), F.col("a").alias("neighbor_id"), "cosine")
    )
    best = Window.partitionBy("producer_id").orderBy(F.col("cosine").desc(), F.col("neighbor_id"))
    return (
        both.withColumn("_rank", F.row_number().over(best))
        .filter(F.col("_rank") <= max_neighbors)
        .select(
            F.col("producer_id").cast("bigint"),
            F.col("neighbor_id").cast("bigint"),
            F.col("cosine").cast("double"),
        )
    )


# ---------------------------------------------------------------------------------------------
# 2. KnownFor
# ---------------------------------------------------------------------------------------------


def known_for(
    similarity: DataFrame,
    *,
    k: int = DEFAULTS.k,
    seed: int = DEFAULTS.seed,
    iterations: int = DEFAULTS.iterations,
    resolution: float = DEFAULTS.resolution,
) -> DataFrame:
    """(producer_id, cluster_id, score): at most one of K communities per producer, found by the
    seeded local-moving community detection of `jobs.simclusters_known_for.detect_communities`."""
    return detect_communities(similarity, k=k, seed=seed, iterations=iterations, resolution=resolution)


# ---------------------------------------------------------------------------------------------
# 3. InterestedIn
# ---------------------------------------------------------------------------------------------


def _top_n(df: DataFrame, *, by: str, n: int, order_col: str = "score", tie_col: str = "cluster_id") -> DataFrame:
    window = Window.partitionBy(by).orderBy(F.col(order_col).desc(), F.col(tie_col))
    return df.withColumn("_rank", F.row_number().over(window)).filter(F.col("_rank") <= n).drop("_rank")


def _l2_normalise(df: DataFrame, *, by: str) -> DataFrame:
    norm = F.sqrt(F.sum(F.col("score") * F.col("score")).over(Window.partitionBy(by)))
    return df.withColumn("score", F.col("score") / norm)


def interested_in(
    follows: DataFrame,
    known_for: DataFrame,
    *,
    top_clusters: int = DEFAULTS.top_clusters,
    min_social_proof: int = DEFAULTS.min_social_proof,
) -> DataFrame:
    """(user_id, cluster_id, score): the follow matrix times KnownFor, per user L2-normalised.

    score(u, c) = sum of KnownFor scores of the producers u follows in c; clusters with fewer than
    `min_social_proof` followed producers are dropped, the user's `top_clusters` best kept (ties by
    cluster id), and the kept vector scaled to unit length.
    """
    edges = follows.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("producer_id"))
    per_cluster = (
        edges.join(
            known_for.select("producer_id", "cluster_id", F.col("score").alias("kf")), on="producer_id", how="inner"
        )
        .groupBy("user_id", "cluster_id")
        .agg(F.sum("kf").alias("score"), F.count(F.lit(1)).alias("proof"))
        .filter((F.col("proof") >= min_social_proof) & (F.col("score") > 0))
        .select("user_id", "cluster_id", "score")
    )
    kept = _top_n(per_cluster, by="user_id", n=top_clusters)
    return _l2_normalise(kept, by="user_id").select(
        F.col("user_id").cast("bigint"), F.col("cluster_id").cast("int"), F.col("score").cast("double")
    )


# ---------------------------------------------------------------------------------------------
# 4. Producer embeddings
# ---------------------------------------------------------------------------------------------


def producer_embeddings(
    follows: DataFrame,
    interested_in: DataFrame,
    *,
    top_clusters: int = DEFAULTS.producer_top_clusters,
    min_followers: int = DEFAULTS.producer_min_followers,
) -> DataFrame:
    """(producer_id, cluster_id, score): cosine of a producer's follower set with each community's
    InterestedIn column (SimClusters' producer embeddings):

        score(p, c) = sum over followers f of p of InterestedIn(f, c) / (sqrt(|followers(p)|) * ||InterestedIn(., c)||)

    for accounts with >= min_followers followers; the `top_clusters` best clusters per producer.
    Followers without an InterestedIn still count in |followers(p)|.
    """
    followers = (
        follows.groupBy(F.col("followee_id").alias("producer_id"))
        .agg(F.count(F.lit(1)).alias("followers"))
        .filter(F.col("followers") >= min_followers)
    )
    column_norm = interested_in.groupBy("cluster_id").agg(F.sqrt(F.sum(F.col("score") * F.col("score"))).alias("cnorm"))
    sums = (
        follows.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("producer_id"))
        .join(interested_in, on="user_id", how="inner")
        .groupBy("producer_id", "cluster_id")
        .agg(F.sum("score").alias("total"))
    )
    scored = (
        sums.join(followers, on="producer_id", how="inner")
        .join(F.broadcast(column_norm), on="cluster_id", how="inner")
        .select(
            "producer_id", "cluster_id", (F.col("total") / (F.sqrt(F.col("followers")) * F.col("cnorm"))).alias("score")
        )
    )
    return _top_n(scored, by="producer_id", n=top_clusters).select(
        F.col("producer_id").cast("bigint"), F.col("cluster_id").cast("int"), F.col("score").cast("double")
    )


# ---------------------------------------------------------------------------------------------
# 5. Tweet embeddings and 6. the per-cluster index
# ---------------------------------------------------------------------------------------------


def _epoch_seconds(as_of: datetime) -> float:
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return as_of.timestamp()


def tweet_embeddings(
    engagements: DataFrame,
    interested_in: DataFrame,
    *,
    as_of: datetime,
    half_life_hours: float = DEFAULTS.half_life_hours,
    actions: Iterable[str] = DEFAULTS.tweet_actions,
    top_clusters: int = DEFAULTS.tweet_top_clusters,
    tweets: DataFrame | None = None,
) -> DataFrame:
    """(tweet_id, cluster_id, score): the decayed sum of the InterestedIn vectors of a tweet's engagers.

    Each engagement with one of `actions` at or before `as_of` adds its user's InterestedIn times
    0.5 ** (hours from the engagement to as_of / half_life_hours); a user engaging in two ways
    counts twice. Scores are not normalised (their size is the tweet's recent reach in the
    community); the `top_clusters` best per tweet are kept. With `tweets` (tweet_id, deleted_at),
    only tweets there and not deleted at `as_of` are embedded.
    """
    as_of_s = _epoch_seconds(as_of)
    age_hours = (F.lit(as_of_s) - F.unix_micros(F.col("created_at")).cast("double") / 1e6) / 3600.0
    decayed = (
        engagements.filter(F.col("action").isin(list(actions)))
        .select("user_id", "tweet_id", age_hours.alias("age_hours"))
        .filter(F.col("age_hours") >= 0)
        .select(
            "user_id", "tweet_id", F.pow(F.lit(0.5), F.col("age_hours") / F.lit(float(half_life_hours))).alias("decay")
        )
    )
    if tweets is not None:
        deleted_s = F.unix_micros(F.col("deleted_at")).cast("double") / 1e6
        live = tweets.filter(F.col("deleted_at").isNull() | (deleted_s > F.lit(as_of_s))).select("tweet_id")
        decayed = decayed.join(live, on="tweet_id", how="left_semi")
    sums = (
        decayed.join(interested_in, on="user_id", how="inner")
        .groupBy("tweet_id", "cluster_id")
        .agg(F.sum(F.col("decay") * F.col("score")).alias("score"))
    )
    return _top_n(sums, by="tweet_id", n=top_clusters).select(
        F.col("tweet_id").cast("bigint"), F.col("cluster_id").cast("int"), F.col("score").cast("double")
    )


def top_tweets_per_cluster(
    tweet_embeddings: DataFrame,
    *,
    per_cluster: int = DEFAULTS.tweets_per_cluster,
) -> DataFrame:
    """(cluster_id, tweet_id, score, rank): each community's best tweets by score, rank 1 first
    (ties by tweet id)."""
    order = Window.partitionBy("cluster_id").orderBy(F.col("score").desc(), F.col("tweet_id"))
    return (
        tweet_embeddings.withColumn("rank", F.row_number().over(order))
        .filter(F.col("rank") <= per_cluster)
        .select(
            F.col("cluster_id").cast("int"),
            F.col("tweet_id").cast("bigint"),
            F.col("score").cast("double"),
            F.col("rank").cast("int"),
        )
    )


# ---------------------------------------------------------------------------------------------
# 7. Evaluation
# ---------------------------------------------------------------------------------------------


def simclusters_follow_candidates(
    interested_in: DataFrame,
    producer_embeddings: DataFrame,
    train_follows: DataFrame,
    *,
    k: int = 50,
    user_clusters: int = 10,
    producers_per_cluster: int = 300,
) -> DataFrame:
    """(user_id, candidate_id, score): per user, the k producers with the largest
    sum over clusters c of InterestedIn(u, c) * producer_score(p, c).

    Retrieval goes only through each user's `user_clusters` best clusters and each cluster's
    `producers_per_cluster` best producers (an inverted index), never users x producers. Accounts
    the user follows in `train_follows`, and the user, are excluded. `producer_embeddings` may be
    KnownFor instead (same columns).
    """
    user_top = _top_n(interested_in, by="user_id", n=user_clusters).select(
        "user_id", "cluster_id", F.col("score").alias("u")
    )
    index = _top_n(producer_embeddings, by="cluster_id", n=producers_per_cluster, tie_col="producer_id").select(
        "cluster_id", "producer_id", F.col("score").alias("p")
    )
    followed = train_follows.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("candidate_id"))
    scored = (
        user_top.join(index, on="cluster_id", how="inner")
        .groupBy("user_id", F.col("producer_id").alias("candidate_id"))
        .agg(F.sum(F.col("u") * F.col("p")).alias("score"))
        .filter(F.col("user_id") != F.col("candidate_id"))
        .join(followed, on=["user_id", "candidate_id"], how="left_anti")
    )
    return _top_n(scored, by="user_id", n=k, tie_col="candidate_id").select(
        F.col("user_id").cast("bigint"), F.col("candidate_id").cast("bigint"), F.col("score").cast("double")
    )


def known_for_quality(known_for, truth_users, *, follows, min_followers: int = DEFAULTS.min_followers) -> dict:
    """{"known_for_nmi", "known_for_coverage", "producers_with_cluster", "eligible_producers"}.

    NMI between the KnownFor cluster and the true home community, over producers that have a
    cluster; coverage: the share of eligible producers (accounts with >= min_followers followers
    in `follows`) that have a cluster. Arguments are pyarrow tables or pandas frames:
    known_for (producer_id, cluster_id, ...), truth_users (user_id, home_community), follows
    (follower_id, followee_id).
    """
    import pandas as pd

    from core.graph_eval import normalized_mutual_information

    def frame(t, columns):
        df = t.to_pandas() if hasattr(t, "to_pandas") and not isinstance(t, pd.DataFrame) else t
        return df[list(columns)]

    kf = frame(known_for, ("producer_id", "cluster_id"))
    truth = frame(truth_users, ("user_id", "home_community"))
    fl = frame(follows, ("followee_id",))
    counts = fl.groupby("followee_id").size()
    eligible = set(counts[counts >= min_followers].index)
    joined = kf.merge(truth, left_on="producer_id", right_on="user_id", how="inner")
    nmi = normalized_mutual_information(joined["home_community"].to_numpy(), joined["cluster_id"].to_numpy())
    covered = len(eligible & set(kf["producer_id"]))
    return {
        "known_for_nmi": float(nmi),
        "known_for_coverage": covered / len(eligible) if eligible else math.nan,
        "producers_with_cluster": int(len(kf)),
        "eligible_producers": int(len(eligible)),
    }
