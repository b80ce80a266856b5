"""Two-hop expansion: the per-block kernel (`jobs.follow_graph.follow_graph_two_hop`) against the
Spark join it replaced, on the same random follow graph and Spark session, as JSON.

    python -m benchmarks.two_hop [--users 20000] [--seed 7] [--workdir DIR]

The graph: N users, out-degrees log-normal (sigma 1) around `--mean-follows` (60), followees drawn
by a Zipf-like popularity (exponent 0.8), self-follows and repeats dropped, follow times spread over
a year. It is written to Parquet once and read back by both runs. Each implementation writes its
table to Parquet (as the asset writes Delta), after a warm-up of both on a 500-user graph; the two
tables must be equal row for row (same schema; proof lists element for element), or the benchmark
fails. Prints one JSON document:

    {"benchmark": "two_hop", "users": N, "follows": E, "rows": R, "config": {...},
     "baseline_seconds": s, "kernel_seconds": s, "speedup": baseline / kernel, "equal": true, ...}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.measure import benchmark_workdir

YEAR_US = 365 * 24 * 3600 * 10**6
START_US = 1_767_225_600 * 10**6  # 2026-01-01 UTC


def random_follows(users: int, *, mean_follows: float = 60.0, seed: int = 7) -> pa.Table:
    """(follower_id, followee_id, created_at) of a skewed random graph over user ids 1..users."""
    rng = np.random.default_rng(seed)
    sigma = 1.0
    degrees = rng.lognormal(np.log(mean_follows) - sigma**2 / 2, sigma, size=users)
    # Drawn with repeats, which are dropped: draw a little more than the mean asks.
    degrees = np.clip(np.rint(degrees * 1.15), 1, users - 1).astype(np.int64)
    popularity = 1.0 / np.arange(1, users + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    followers = np.repeat(np.arange(users, dtype=np.int64), degrees)
    followees = rng.choice(users, size=followers.shape[0], p=popularity).astype(np.int64)
    keep = followers != followees
    _, first = np.unique(followers[keep] * users + followees[keep], return_index=True)
    followers, followees = followers[keep][first], followees[keep][first]
    created = START_US + rng.integers(0, YEAR_US, size=followers.shape[0])
    return pa.table(
        {
            "follower_id": followers + 1,
            "followee_id": followees + 1,
            "created_at": pa.array(created, type=pa.timestamp("us", tz="UTC")),
        }
    )


def _two_hop_join_baseline(follows, *, config):
    """The Spark join + groupBy that `follow_graph_two_hop` was until 2026-12-07, as it was."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    recent_window = Window.partitionBy("follower_id").orderBy(F.col("created_at").desc(), F.col("followee_id"))
    recent = (
        follows.withColumn("_position", F.row_number().over(recent_window))
        .where(F.col("_position") <= config.max_intermediates_per_user)
        .select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("intermediate_id"))
    )
    sample_window = Window.partitionBy("follower_id").orderBy(
        F.xxhash64("follower_id", "followee_id"), F.col("followee_id")
    )
    sampled = (
        follows.withColumn("_position", F.row_number().over(sample_window))
        .where(F.col("_position") <= config.max_followees_per_intermediate)
        .select(F.col("follower_id").alias("intermediate_id"), F.col("followee_id").alias("candidate_id"))
    )
    expansions = recent.join(sampled, on="intermediate_id", how="inner")
    already_followed = follows.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("candidate_id"))
    counted = (
        expansions.where(F.col("candidate_id") != F.col("user_id"))
        .groupBy("user_id", "candidate_id")
        .agg(
            F.count(F.lit(1)).alias("social_proof_count"),
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


def _timed_write(build, follows, config, out: Path) -> tuple[float, object]:
    """Seconds to build the table (a `follow_graph_two_hop`-like function) and write it to `out`."""
    started = time.monotonic()
    table = build(follows, config=config)
    table.write.mode("overwrite").parquet(str(out))
    return time.monotonic() - started, table.schema


def _sorted_rows(path: Path) -> pa.Table:
    return pq.read_table(str(path)).sort_by([("user_id", "ascending"), ("candidate_id", "ascending")])


def compare(spark, graph: Path, workdir: Path, config, tag: str) -> dict:
    """Both implementations on the graph in `graph`: their seconds, and whether their tables are equal."""
    from jobs.follow_graph import follow_graph_two_hop

    follows = spark.read.parquet(str(graph))
    baseline_s, baseline_schema = _timed_write(_two_hop_join_baseline, follows, config, workdir / f"{tag}-baseline")
    kernel_s, kernel_schema = _timed_write(follow_graph_two_hop, follows, config, workdir / f"{tag}-kernel")
    baseline, kernel = _sorted_rows(workdir / f"{tag}-baseline"), _sorted_rows(workdir / f"{tag}-kernel")
    return {
        "rows": kernel.num_rows,
        "baseline_seconds": round(baseline_s, 2),
        "kernel_seconds": round(kernel_s, 2),
        "speedup": round(baseline_s / max(kernel_s, 1e-9), 2),
        "equal": baseline_schema == kernel_schema and baseline.equals(kernel),
    }


def _spark(settings):
    from jobs.spark_session import build_spark_session

    return build_spark_session(
        master="local[2]",
        jars_cache_dir=settings.cache_dir,
        app_name="homefeed-bench-two-hop",
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
    )


def main() -> None:
    from core.settings import load_settings
    from jobs.follow_graph import TwoHopConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--mean-follows", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    config, settings = TwoHopConfig(), load_settings()
    spark = _spark(settings)
    with benchmark_workdir(args.workdir, keep=False, prefix="homefeed-two-hop-bench-") as workdir:
        for tag, users in (("warmup", 500), ("graph", args.users)):
            follows = random_follows(users, mean_follows=args.mean_follows, seed=args.seed)
            pq.write_table(follows, str(workdir / f"{tag}.parquet"))
        warmup = compare(spark, workdir / "warmup.parquet", workdir, config, "warmup")
        result = compare(spark, workdir / "graph.parquet", workdir, config, "graph")
    spark.stop()
    print(
        json.dumps(
            {
                "benchmark": "two_hop",
                "users": args.users,
                "follows": follows.num_rows,
                "follows_per_user": round(follows.num_rows / args.users, 1),
                "config": dataclasses.asdict(config),
                **result,
                "warmup_equal": warmup["equal"],
                "spark": {"master": "local[2]", "shuffle_partitions": settings.spark_shuffle_partitions},
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )
    if not (result["equal"] and warmup["equal"]):
        raise SystemExit("the kernel's table differs from the Spark join's")


if __name__ == "__main__":
    main()
