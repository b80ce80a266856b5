"""Follow-graph expansions: two-hop candidates with social proof, mutual follows, follow counts.

Fan-out bound for the two-hop join. A user u reaches candidate w through each followee v that
follows w, so the join produces sum over v of followers(v) x followees(v) rows: quadratic in a
celebrity's audience. Two caps keep it linear in the number of follows:

* each user expands through at most `max_intermediates_per_user` followees, the most recently
  followed ones (recency is what Twitter's follow recommendations weight most);
* each intermediate contributes at most `max_followees_per_intermediate` of its followees, a
  sample chosen by a fixed hash of (intermediate, followee). The sample is the same for every user
  who follows that intermediate, so social-proof counts stay comparable across users.

The join is then bounded by users x max_intermediates x max_followees rows, whatever the degree
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


@dataclass(frozen=True)
class TwoHopConfig:
    max_intermediates_per_user: int = 100
    max_followees_per_intermediate: int = 30
    max_proofs: int = 5
    top_k: int = 100
    min_social_proof: int = 1


def _recent_follows(follows: DataFrame, *, per_user: int) -> DataFrame:
    window = Window.partitionBy("follower_id").orderBy(F.col("created_at").desc(), F.col("followee_id"))
    return (
        follows.withColumn("_position", F.row_number().over(window))
        .where(F.col("_position") <= per_user)
        .select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("intermediate_id"))
    )


def _sampled_followees(follows: DataFrame, *, per_intermediate: int) -> DataFrame:
    window = Window.partitionBy("follower_id").orderBy(F.xxhash64("follower_id", "followee_id"), F.col("followee_id"))
    return (
        follows.withColumn("_position", F.row_number().over(window))
        .where(F.col("_position") <= per_intermediate)
        .select(F.col("follower_id").alias("intermediate_id"), F.col("followee_id").alias("candidate_id"))
    )


def follow_graph_two_hop(follows: DataFrame, *, config: TwoHopConfig = TwoHopConfig()) -> DataFrame:
    """(user_id, candidate_id, social_proof_count, proof_user_ids, rank): accounts followed by the
    accounts a user follows, not already followed and not the user, top-k per user by social proof.

    `proof_user_ids` holds up to `max_proofs` of the followees that follow the candidate (smallest
    ids first, so the list is deterministic).
    """
    expansions = _recent_follows(follows, per_user=config.max_intermediates_per_user).join(
        _sampled_followees(follows, per_intermediate=config.max_followees_per_intermediate),
        on="intermediate_id",
        how="inner",
    )
    already_followed = follows.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("candidate_id"))
    counted = (
        expansions.where(F.col("candidate_id") != F.col("user_id"))
        .groupBy("user_id", "candidate_id")
        .agg(
            F.count(F.lit(1)).alias("social_proof_count"),
            # sort_array, not array_sort, whose default comparator is an interpreted lambda (slow).
            F.slice(F.sort_array(F.collect_list("intermediate_id")), 1, config.max_proofs).alias("proof_user_ids"),
        )
        .where(F.col("social_proof_count") >= config.min_social_proof)
        .join(already_followed, on=["user_id", "candidate_id"], how="left_anti")
    )
    window = Window.partitionBy("user_id").orderBy(F.col("social_proof_count").desc(), F.col("candidate_id"))
    return (
        counted.withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= config.top_k)
        .select(
            "user_id",
            "candidate_id",
            F.col("social_proof_count").cast("int").alias("social_proof_count"),
            "proof_user_ids",
            F.col("rank").cast("int").alias("rank"),
        )
    )


def mutual_follows(follows: DataFrame) -> DataFrame:
    """(user_id, mutual_id, since): both follow each other; one row per direction."""
    forward = follows.select(
        F.col("follower_id").alias("user_id"), F.col("followee_id").alias("mutual_id"), F.col("created_at").alias("a")
    )
    backward = follows.select(
        F.col("followee_id").alias("user_id"), F.col("follower_id").alias("mutual_id"), F.col("created_at").alias("b")
    )
    return forward.join(backward, on=["user_id", "mutual_id"], how="inner").select(
        "user_id", "mutual_id", F.greatest("a", "b").alias("since")
    )


def user_follow_counts(users: DataFrame, follows: DataFrame, mutuals: DataFrame) -> DataFrame:
    """(user_id, following_count, follower_count, mutual_count) for every user, zeros included."""
    following = follows.groupBy(F.col("follower_id").alias("user_id")).agg(F.count(F.lit(1)).alias("following_count"))
    followers = follows.groupBy(F.col("followee_id").alias("user_id")).agg(F.count(F.lit(1)).alias("follower_count"))
    mutual = mutuals.groupBy("user_id").agg(F.count(F.lit(1)).alias("mutual_count"))
    return (
        users.select("user_id")
        .join(following, on="user_id", how="left")
        .join(followers, on="user_id", how="left")
        .join(mutual, on="user_id", how="left")
        .select(
            "user_id",
            *[
                F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c)
                for c in ("following_count", "follower_count", "mutual_count")
            ],
        )
    )
