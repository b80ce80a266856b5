"""Heavy-ranker inference efficiency and batch-scoring wall time, as JSON.

    python -m benchmarks.ranking inference [--rows 200000] [--threads 1 2]
    python -m benchmarks.ranking batch --warehouse W [--warehouse W2 ...] --models-from M
    python -m benchmarks.ranking training [--examples 3100000] [--validation 1000000]
    python -m benchmarks.ranking heuristics [--users 10000] [--rows-per-user 500]

`inference`: candidates per second of the heavy ranker (default architecture, the registry's
feature count) on this CPU, the model's multiply-adds per candidate, and a float32 matrix-multiply
peak measured in the same run, so that efficiency = achieved FLOP/s / matmul FLOP/s is a ratio
of two numbers from the same machine at the same time.

`training`: wall time of training both rankers (one thread each for torch, two for xgboost as
configured) on as many examples as a world of a given size yields: the 5K-user world's 3 training
days hold 155K impressions (about 10 per user a day), so a 100K-user world's hold about 3.1M, with
1M for validation. The examples are synthetic (the registry's feature count, labels drawn from a
logistic model at the real heads' base rates): training cost depends on the shapes, the epochs
early stopping runs, not on where the numbers came from.

`heuristics`: the feed heuristics stage of `ranked_feeds` on synthetic scored rows (users x
rows-per-user, written to Parquet first, each path then reading the same files into Spark's no-op
sink): `jobs.ranking.apply_heuristics` (sorted partitions streamed through Arrow batches of many
users) against the grouped `applyInPandas` it replaced, run in the same session as the baseline.

`batch`: wall time and peak memory of `homefeed run --select key:ranked_feeds` on warehouses that
already hold the candidates and feature tables (e.g. `python -m benchmarks.graph_jobs --keep`), with
the promoted rankers of the warehouse `--models-from` copied into each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.generate_ingest import AS_OF, homefeed_command
from benchmarks.measure import measure_command
from core.heads import HEADS
from models.heavy_ranker import (
    HeavyRanker,
    HeavyRankerConfig,
    MultiTaskNet,
    RankerInputs,
    Standardizer,
    hash_ids,
    train_heavy_ranker,
)
from models.light_ranker import train_light_ranker
from models.ranker_features import HEAVY_RANKER_FEATURES, LIGHT_RANKER_FEATURES

# Each head's positive rate on the 5K world's test impressions (docs/ranking.md): 2,289 likes of
# 51,938 impressions, and so on.
HEAD_BASE_RATES = dict(zip(HEADS, (0.044, 0.0079, 0.004, 0.030, 0.004, 0.026, 0.0002, 0.0032, 0.0002)))


def multiply_adds_per_candidate(net: MultiTaskNet) -> int:
    """Σ in × out over the linear layers: the dense work of one candidate (embedding lookups are
    gathers, activations are elementwise; both are left out)."""
    return sum(layer.in_features * layer.out_features for layer in net.modules() if isinstance(layer, torch.nn.Linear))


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def heavy_ranker_throughput(rows: int, *, batch_size: int = 8192, seed: int = 0) -> tuple[float, float, int]:
    """(candidates per second through the network alone, and end to end with the feature transform and
    calibration; multiply-adds per candidate) of an untrained default heavy ranker:
    the speed does not depend on the weights."""
    config = HeavyRankerConfig(seed=seed)
    torch.manual_seed(seed)
    n = len(HEAVY_RANKER_FEATURES)
    net = MultiTaskNet(n, tuple(f"h{i}" for i in range(9)), config).eval()
    model = HeavyRanker(
        feature_names=HEAVY_RANKER_FEATURES,
        heads=tuple(f"h{i}" for i in range(9)),
        config=config,
        standardizer=Standardizer(np.zeros(n), np.ones(n)),
        net=net,
    )
    rng = np.random.default_rng(seed)
    inputs = RankerInputs(
        dense=rng.normal(size=(rows, n)).astype(np.float32),
        user_ids=rng.integers(0, 10**9, rows),
        author_ids=rng.integers(0, 10**9, rows),
    )
    dense = model.standardizer.transform(inputs.dense)
    users, authors = hash_ids(inputs.user_ids, config.id_hash_bits), hash_ids(inputs.author_ids, config.id_hash_bits)

    def network_pass() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, rows, batch_size):
                hi = lo + batch_size
                net(torch.from_numpy(dense[lo:hi]), torch.from_numpy(users[lo:hi]), torch.from_numpy(authors[lo:hi]))
        return time.perf_counter() - start

    network_pass()  # warm-up
    network_seconds = min(network_pass() for _ in range(3))
    start = time.perf_counter()
    model.probabilities(inputs)
    end_to_end_seconds = time.perf_counter() - start
    return rows / network_seconds, rows / end_to_end_seconds, multiply_adds_per_candidate(net)


def bench_inference(rows: int, threads: list[int]) -> dict:
    results = []
    for count in threads:
        torch.set_num_threads(count)
        peak = matmul_peak_flops()
        network_rate, end_to_end_rate, macs = heavy_ranker_throughput(rows)
        achieved = network_rate * 2 * macs
        results.append(
            {
                "threads": count,
                "candidates_per_second_network": round(network_rate),
                "candidates_per_second_end_to_end": round(end_to_end_rate),
                "multiply_adds_per_candidate": macs,
                "achieved_gflops": round(achieved / 1e9, 2),
                "matmul_peak_gflops": round(peak / 1e9, 2),
                "efficiency_vs_matmul_peak": round(achieved / peak, 4),
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "heavy_ranker_inference", "rows": rows, "torch": torch.__version__, "results": results}


def synthetic_examples(rows: int, *, seed: int, users: int = 100_000, authors: int = 100_000) -> RankerInputs:
    """Examples shaped like the training set: standard-normal features, ids, and per head labels
    drawn from a logistic model over a few features whose intercept gives the head's base rate."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, len(HEAVY_RANKER_FEATURES))).astype(np.float32)
    weights = np.random.default_rng(0).normal(scale=0.5, size=(len(HEAVY_RANKER_FEATURES), len(HEADS)))
    weights[12:] = 0.0  # a dozen informative features, the rest noise
    logits = dense.astype(np.float64) @ weights + np.log([rate / (1 - rate) for rate in HEAD_BASE_RATES.values()])
    labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return RankerInputs(
        dense=dense, user_ids=rng.integers(0, users, rows), author_ids=rng.integers(0, authors, rows), labels=labels
    )


def bench_training(examples: int, validation: int) -> dict:
    train, valid = synthetic_examples(examples, seed=1), synthetic_examples(validation, seed=2)
    start = time.perf_counter()
    heavy = train_heavy_ranker(train, valid, feature_names=HEAVY_RANKER_FEATURES)
    heavy_seconds = time.perf_counter() - start
    light_columns = [
        HEAVY_RANKER_FEATURES.index(name) for name in LIGHT_RANKER_FEATURES if name in HEAVY_RANKER_FEATURES
    ]
    positive = lambda inputs: (inputs.labels[:, :7].max(axis=1) > 0).astype(np.float32)  # noqa: E731
    start = time.perf_counter()
    light = train_light_ranker(
        train.dense[:, light_columns],
        positive(train),
        valid.dense[:, light_columns],
        positive(valid),
        feature_names=[HEAVY_RANKER_FEATURES[i] for i in light_columns],
    )
    light_seconds = time.perf_counter() - start
    epochs = len(heavy.history)
    return {
        "benchmark": "ranker_training",
        "train_examples": examples,
        "validation_examples": validation,
        "features": len(HEAVY_RANKER_FEATURES),
        "torch": torch.__version__,
        "torch_threads": 1,
        "heavy_ranker_seconds": round(heavy_seconds, 1),
        "heavy_ranker_epochs": epochs,
        "seconds_per_epoch": round(heavy_seconds / epochs, 1),
        "light_ranker_seconds": round(light_seconds, 1),
        "light_ranker_trees": light.best_iteration + 1,
    }


def bench_batch(warehouses: list[Path], models_from: Path) -> dict:
    results = []
    for warehouse in warehouses:
        shutil.rmtree(warehouse / "models", ignore_errors=True)
        shutil.copytree(models_from / "models", warehouse / "models")
        report = warehouse / "report-ranked_feeds.json"
        raw = warehouse.parent / "raw"  # a benchmark world's input, beside its warehouse
        measured = measure_command(
            homefeed_command(
                "run",
                "--warehouse",
                str(warehouse),
                "--select",
                "key:ranked_feeds",
                "--report",
                str(report),
                *(["--input", str(raw)] if raw.is_dir() else []),
            ),
            env={"HOMEFEED_AS_OF": AS_OF},
        )
        if measured.returncode != 0:
            raise SystemExit(f"ranked_feeds failed on {warehouse}:\n{measured.stderr[-3000:]}")
        outcome = json.loads(report.read_text())
        steps = outcome["step_seconds"]
        results.append(
            {
                "warehouse": str(warehouse),
                "process_seconds": measured.seconds,
                "job_seconds": steps.get("ranked_feeds"),
                "quality_check_seconds": steps.get("ranked_feeds_quality"),
                "quality_check_phase_seconds": outcome.get("check_phase_seconds", {}).get("ranked_feeds"),
                "peak_rss_mb": measured.peak_rss_mb,
                "rows": outcome["rows"].get("ranked_feeds"),
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "ranked_feeds_batch", "results": results}


def synthetic_scored_rows(spark, users: int, rows_per_user: int):
    """Scored rows as `jobs.ranking.apply_heuristics` reads them, derived from the row number."""
    from pyspark.sql import functions as F

    from core.heads import HEAD_COLUMNS
    from jobs.ranking import CARRIED

    unit = lambda salt: (F.xxhash64(F.col("id"), F.lit(salt)) % 10_000).cast("double") / 10_000  # noqa: E731
    rows = spark.range(users * rows_per_user).select(
        (F.col("id") / rows_per_user).cast("long").alias("user_id"),
        F.col("id").alias("tweet_id"),
        (F.abs(F.xxhash64("id")) % 5_000).alias("author_id"),
        F.lit("2026-10-01 00:00:00").cast("timestamp").alias("tweet_created_at"),
        (unit("network") < 0.6).alias("is_in_network"),
        F.array(F.lit("twhin")).alias("sources"),
        F.array(F.col("id") % 1_000).alias("social_proof_user_ids"),
        F.lit(1).alias("social_proof_count"),
        unit("light").alias("light_score"),
        *[unit(c).alias(c) for c in HEAD_COLUMNS],
        (unit("heavy") * 2 - 0.5).alias("heavy_score"),
        (unit("reply") < 0.2).alias("tweet__is_reply"),
        F.when(unit("fatigue") < 0.01, unit("days") * 200).alias("fatigue_days_since"),
    )
    return rows.select(*CARRIED, *[c for c in rows.columns if c not in CARRIED])


def grouped_heuristics(scored, heuristics):
    """The stage `jobs.ranking.apply_heuristics` replaced: `rank_user_feed` per user through a grouped
    `applyInPandas` (the baseline of `bench_heuristics`)."""
    from pyspark.sql import functions as F

    from core.feed_heuristics import rank_user_feed
    from jobs.ranking import RANKED_FEEDS_SCHEMA

    columns = [f.name for f in RANKED_FEEDS_SCHEMA.fields]
    rows = scored.withColumn("is_reply", F.col("tweet__is_reply")).withColumn(
        "fatigue_days_since", F.coalesce("fatigue_days_since", F.lit(float("nan")))
    )
    return rows.groupBy("user_id").applyInPandas(
        lambda user_rows: rank_user_feed(user_rows, heuristics)[columns], RANKED_FEEDS_SCHEMA
    )


def bench_heuristics(users: int, rows_per_user: int) -> dict:
    import tempfile

    from core.feed_heuristics import FeedHeuristics
    from core.settings import load_settings
    from jobs.ranking import apply_heuristics
    from orchestration.resource_bindings import resources_from_settings

    spark, heuristics = resources_from_settings(load_settings())["spark"].get_session(), FeedHeuristics()

    with tempfile.TemporaryDirectory(prefix="homefeed-heuristics-") as scratch:
        synthetic_scored_rows(spark, users, rows_per_user).write.parquet(f"{scratch}/rows")
        scored = spark.read.parquet(f"{scratch}/rows")
        seconds = {}
        for name, stage in (
            ("grouped_apply_in_pandas", lambda rows: grouped_heuristics(rows, heuristics)),
            ("sorted_arrow_batches", lambda rows: apply_heuristics(rows, heuristics=heuristics)),
        ):
            started = time.perf_counter()
            stage(scored).write.format("noop").mode("overwrite").save()
            seconds[name] = round(time.perf_counter() - started, 2)
            print(json.dumps({name: seconds[name]}), file=sys.stderr, flush=True)
    return {
        "benchmark": "feed_heuristics_stage",
        "users": users,
        "rows": users * rows_per_user,
        "seconds": seconds,
        "speedup": round(seconds["grouped_apply_in_pandas"] / seconds["sorted_arrow_batches"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("inference")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p = sub.add_parser("training")
    p.add_argument("--examples", type=int, default=3_100_000)
    p.add_argument("--validation", type=int, default=1_000_000)
    p = sub.add_parser("heuristics")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--rows-per-user", type=int, default=500)
    p = sub.add_parser("batch")
    p.add_argument("--warehouse", type=Path, action="append", required=True)
    p.add_argument("--models-from", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "inference":
        result = bench_inference(args.rows, args.threads)
    elif args.what == "training":
        result = bench_training(args.examples, args.validation)
    elif args.what == "heuristics":
        result = bench_heuristics(args.users, args.rows_per_user)
    else:
        result = bench_batch(args.warehouse, args.models_from)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
