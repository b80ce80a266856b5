"""Publication throughput to Redis, next to redis-benchmark's SET throughput, as JSON.

    python -m benchmarks.publish --warehouse W [--warehouse W2 ...]

For each warehouse (holding `ranked_feeds`, e.g. one of `python -m benchmarks.graph_jobs --keep`
with `python -m benchmarks.ranking batch` run on it): start a fresh local redis-server, publish
the table (`jobs.publish.publish_feeds`: read, encode, pipelined SETs, read-back verification,
switch) and report bytes per second; then, on the same server in the same run, `redis-benchmark`
SETs of the same mean value size with the same pipeline depth. The ratio publish / redis-benchmark
says how close the publisher comes to what Redis itself accepts from a C client.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from jobs.publish import connect, publish_feeds
from serving.redis_server import start_redis

PIPELINE = 500


def redis_benchmark_set(port: int, *, value_bytes: int, requests: int, pipeline: int = PIPELINE) -> float:
    """SET requests per second from redis-benchmark (one client, like the publisher)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(requests), "-d", str(value_bytes),
         "-P", str(pipeline), "-c", "1", "-r", str(requests), "-q", "--csv"],
        capture_output=True, text=True, check=True).stdout
    # "test","rps",... then "SET","12345.67",...
    match = re.search(r'"SET","([\d.]+)"', out)
    if not match:
        raise RuntimeError(f"unexpected redis-benchmark output: {out[:300]}")
    return float(match.group(1))


def bench_warehouse(warehouse: Path) -> dict:
    table = warehouse / "tables" / "ranked_feeds"
    with tempfile.TemporaryDirectory() as workdir:
        server = start_redis(Path(workdir))
        try:
            client = connect(server.url)
            result = publish_feeds(client, table, batch_keys=PIPELINE)
            value_bytes = max(1, result.bytes // max(result.users, 1))
            client.flushall()
            requests = max(result.users, 10_000)
            sets_per_second = redis_benchmark_set(server.port, value_bytes=value_bytes, requests=requests)
        finally:
            server.stop()
    publish_bps = result.bytes / result.seconds
    benchmark_bps = sets_per_second * value_bytes
    return {
        "warehouse": str(warehouse), "users": result.users, "items": result.items, "bytes": result.bytes,
        "mean_value_bytes": value_bytes, "publish_seconds": result.seconds,
        "publish_bytes_per_second": round(publish_bps), "publish_feeds_per_second": round(result.users / result.seconds),
        "redis_benchmark_set_per_second": round(sets_per_second), "redis_benchmark_bytes_per_second": round(benchmark_bps),
        "publish_vs_redis_benchmark": round(publish_bps / benchmark_bps, 3), "pipeline": PIPELINE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, action="append", required=True)
    args = parser.parse_args()
    results = []
    for warehouse in args.warehouse:
        results.append(bench_warehouse(warehouse))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "publish", "results": results}, indent=2))


if __name__ == "__main__":
    main()
