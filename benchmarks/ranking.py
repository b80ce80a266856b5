"""Heavy-ranker inference efficiency and batch-scoring wall time, as JSON.

    python -m benchmarks.ranking inference [--rows 200000] [--threads 1 2]
    python -m benchmarks.ranking batch --warehouse W [--warehouse W2 ...] --models-from M

`inference`: candidates per second of the heavy ranker (default architecture, the registry's
feature count) on this CPU, the model's multiply-adds per candidate, and a float32 matrix-multiply
peak measured in the same run, so that efficiency = achieved FLOP/s / matmul FLOP/s is a ratio
of two numbers from the same machine at the same time.

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
from models.heavy_ranker import HeavyRanker, HeavyRankerConfig, MultiTaskNet, RankerInputs, Standardizer, hash_ids
from models.ranker_features import HEAVY_RANKER_FEATURES


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
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def heavy_ranker_throughput(rows: int, *, batch_size: int = 8192, seed: int = 0) -> tuple[float, float, int]:
    """(candidates per second through the network alone, and end to end with the feature transform and
    calibration; multiply-adds per candidate) of an untrained default heavy ranker:
    the speed does not depend on the weights."""
    config = HeavyRankerConfig(seed=seed)
    torch.manual_seed(seed)
    n = len(HEAVY_RANKER_FEATURES)
    net = MultiTaskNet(n, tuple(f"h{i}" for i in range(9)), config).eval()
    model = HeavyRanker(feature_names=HEAVY_RANKER_FEATURES, heads=tuple(f"h{i}" for i in range(9)), config=config,
                        standardizer=Standardizer(np.zeros(n), np.ones(n)), net=net)
    rng = np.random.default_rng(seed)
    inputs = RankerInputs(dense=rng.normal(size=(rows, n)).astype(np.float32),
                          user_ids=rng.integers(0, 10**9, rows), author_ids=rng.integers(0, 10**9, rows))
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
        results.append({
            "threads": count, "candidates_per_second_network": round(network_rate),
            "candidates_per_second_end_to_end": round(end_to_end_rate),
            "multiply_adds_per_candidate": macs, "achieved_gflops": round(achieved / 1e9, 2),
            "matmul_peak_gflops": round(peak / 1e9, 2), "efficiency_vs_matmul_peak": round(achieved / peak, 4),
        })
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "heavy_ranker_inference", "rows": rows, "torch": torch.__version__, "results": results}


def bench_batch(warehouses: list[Path], models_from: Path) -> dict:
    results = []
    for warehouse in warehouses:
        shutil.rmtree(warehouse / "models", ignore_errors=True)
        shutil.copytree(models_from / "models", warehouse / "models")
        report = warehouse / "report-ranked_feeds.json"
        measured = measure_command(
            homefeed_command("run", "--warehouse", str(warehouse), "--select", "key:ranked_feeds", "--report",
                             str(report)), env={"HOMEFEED_AS_OF": AS_OF})
        if measured.returncode != 0:
            raise SystemExit(f"ranked_feeds failed on {warehouse}:\n{measured.stderr[-3000:]}")
        outcome = json.loads(report.read_text())
        steps = outcome["step_seconds"]
        results.append({"warehouse": str(warehouse), "process_seconds": measured.seconds,
                        "job_seconds": steps.get("ranked_feeds"),
                        "quality_check_seconds": steps.get("ranked_feeds_quality"),
                        "peak_rss_mb": measured.peak_rss_mb, "rows": outcome["rows"].get("ranked_feeds")})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "ranked_feeds_batch", "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("inference")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p = sub.add_parser("batch")
    p.add_argument("--warehouse", type=Path, action="append", required=True)
    p.add_argument("--models-from", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "inference":
        result = bench_inference(args.rows, args.threads)
    else:
        result = bench_batch(args.warehouse, args.models_from)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
