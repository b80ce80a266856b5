"""Follow-graph expansions: two-hop candidates with social proof, mutual follows, follow counts.

Fan-out bound for the two-hop expansion. A user u reaches candidate w through each followee v that
follows w, so the paths number sum over v of followers(v) x followees(v): quadratic in a
celebrity's audience. Two caps keep them linear in the number of follows:

* each user expands through at most `max_intermediates_per_user` followees, the most recently
  followed ones (recency is what Twitter's follow recommendations weight most);
* each intermediate contributes at most `max_followees_per_intermediate` of its followees, a
  sample chosen by a fixed hash of (intermediate, followee). The sample is the same for every user
  who follows that intermediate, so social-proof counts stay comparable across users.

The paths are then bounded by users x max_intermediates x max_followees, whatever the degree
distribution. They never become rows of a Spark table: Spark picks the two capped lists with
window functions and hands each user, in one row, its intermediates with their sampled followees
(an array each) and every account it follows; a numpy kernel (`jobs.two_hop_kernel`) counts the
paths per block of such rows inside `mapInArrow`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, LongType, StructField, StructType

from jobs.two_hop_kernel import Paths, TwoHopRows, two_hop_block

# Users per kernel call: bounds its arrays to about BLOCK_USERS x 3,000 paths at the default caps.
BLOCK_USERS = 1024
TWO_HOP_COLUMNS = ["user_id", "candidate_id", "social_proof_count", "proof_user_ids", "rank"]


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


def _user_paths(follows: DataFrame, config: TwoHopConfig) -> DataFrame:
    """One row per user with a path: (user_id, paths: its recent intermediates, each with its
    sampled followees `candidate_ids`, followed_ids: every account it follows). A null id never
    joins and `collect_list` drops nulls, so null ids drop out, after taking their window positions."""
    sampled = (
        _sampled_followees(follows, per_intermediate=config.max_followees_per_intermediate)
        .groupBy("intermediate_id")
        .agg(F.collect_list("candidate_id").alias("candidate_ids"))
    )
    paths = (
        _recent_follows(follows, per_user=config.max_intermediates_per_user)
        .join(sampled, on="intermediate_id", how="inner")
        .groupBy("user_id")
        .agg(F.collect_list(F.struct("intermediate_id", "candidate_ids")).alias("paths"))
    )
    followed = follows.groupBy(F.col("follower_id").alias("user_id")).agg(
        F.collect_list("followee_id").alias("followed_ids")
    )
    return paths.join(followed, on="user_id", how="inner")


def _two_hop_schema(follows: DataFrame) -> StructType:
    """The table's schema; the ids are nullable where `follows`' are (as the Spark join's were)."""
    nullable = {f.name: f.nullable for f in follows.schema.fields}
    return StructType(
        [
            StructField(name, data_type, nullable)
            for name, data_type, nullable in zip(
                TWO_HOP_COLUMNS,
                (LongType(), LongType(), IntegerType(), ArrayType(LongType(), False), IntegerType()),
                (nullable["follower_id"], nullable["followee_id"], False, False, False),
            )
        ]
    )


def _ids(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _block_paths(paths: pa.Array) -> Paths:
    """The paths of a block's `paths` column (list<struct<intermediate_id, candidate_ids>>)."""
    rows = _ids(pc.list_parent_indices(paths))
    intermediates = pc.list_flatten(paths)
    candidate_ids = pc.struct_field(intermediates, "candidate_ids")
    which = _ids(pc.list_parent_indices(candidate_ids))
    return Paths(
        rows=rows[which],
        via=_ids(pc.struct_field(intermediates, "intermediate_id"))[which],
        candidates=_ids(pc.list_flatten(candidate_ids)),
    )


def _block_batch(user_ids: np.ndarray, found: TwoHopRows) -> pa.RecordBatch:
    proofs = pa.ListArray.from_arrays(
        pa.array(found.proof_offsets.astype(np.int32), type=pa.int32()), pa.array(found.proof_ids, type=pa.int64())
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.array(user_ids[found.rows], type=pa.int64()),
            pa.array(found.candidates, type=pa.int64()),
            pa.array(found.counts, type=pa.int32()),
            proofs,
            pa.array(found.ranks, type=pa.int32()),
        ],
        names=TWO_HOP_COLUMNS,
    )


def _count_paths(
    config: TwoHopConfig, block_users: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function `mapInArrow` runs on `_user_paths` rows: the kernel per block of `block_users`."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for start in range(0, batch.num_rows, block_users):
                block = batch.slice(start, block_users)
                followed = block.column("followed_ids")
                user_ids = _ids(block.column("user_id"))
                found = two_hop_block(
                    user_ids,
                    _block_paths(block.column("paths")),
                    _ids(pc.list_parent_indices(followed)),
                    _ids(pc.list_flatten(followed)),
                    max_proofs=config.max_proofs,
                    top_k=config.top_k,
                    min_social_proof=config.min_social_proof,
                )
                yield _block_batch(user_ids, found)

    return run


def follow_graph_two_hop(follows: DataFrame, *, config: TwoHopConfig = TwoHopConfig()) -> DataFrame:
    """(user_id, candidate_id, social_proof_count, proof_user_ids, rank): accounts followed by the
    accounts a user follows, not already followed and not the user, top-k per user by social proof.

    `social_proof_count` counts the paths to the candidate (one per intermediate that follows it, at
    least `min_social_proof`); `proof_user_ids` holds up to `max_proofs` of those intermediates
    (smallest ids first, so the list is deterministic); `rank` from 1 by (count desc, candidate_id).
    """
    return _user_paths(follows, config).mapInArrow(_count_paths(config, BLOCK_USERS), _two_hop_schema(follows))


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
