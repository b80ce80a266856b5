"""Publication throughput to Redis, next to redis-benchmark's SET throughput, as JSON.

    python -m benchmarks.publish --warehouse W [--warehouse W2 ...]

For each warehouse (holding `ranked_feeds`, e.g. one of `python -m benchmarks.graph_jobs --keep`
with `python -m benchmarks.ranking batch` run on it), on a fresh local redis-server:

* `feeds`: publish the ranked feeds alone (`jobs.publish.publish_feeds`: read, encode, pipelined
  SETs, read-back verification, switch), then `redis-benchmark` SETs of the same mean value size
  with the same pipeline depth;
* `warehouse`: publish every dataset (`jobs.publish.publish_warehouse`: feeds, profiles, follow
  sets, timelines, tweets, lists, who-to-follow, popular), then `redis-benchmark` at that run's
  mean value size.

Each ratio publish / redis-benchmark (bytes per second, measured in the same run) says how close
the publisher comes to what Redis itself accepts from a C client.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from core.redis_server import start_redis
from jobs.publish import PublishResult, connect, publish_feeds, publish_warehouse
from orchestration.publication import table_build_metadata

PIPELINE = 500


def redis_benchmark_set(port: int, *, value_bytes: int, requests: int, pipeline: int = PIPELINE) -> float:
    """SET requests per second from redis-benchmark (one client, like the publisher)."""
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            "set",
            "-n",
            str(requests),
            "-d",
            str(value_bytes),
            "-P",
            str(pipeline),
            "-c",
            "1",
            "-r",
            str(requests),
            "-q",
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "test","rps",... then "SET","12345.67",...
    match = re.search(r'"SET","([\d.]+)"', out)
    if not match:
        raise RuntimeError(f"unexpected redis-benchmark output: {out[:300]}")
    return float(match.group(1))


def bench_warehouse(warehouse: Path) -> dict:
    tables = warehouse / "tables"
    built_as_of = table_build_metadata(tables / "ranked_feeds").get("built_as_of")
    as_of = datetime.fromisoformat(built_as_of) if built_as_of else None
    runs = {}
    with tempfile.TemporaryDirectory() as workdir:
        server = start_redis(Path(workdir))
        try:
            client = connect(server.url)
            for name, publish in (
                ("feeds", lambda: publish_feeds(client, tables / "ranked_feeds", batch_keys=PIPELINE)),
                ("warehouse", lambda: publish_warehouse(client, tables, as_of=as_of, batch_keys=PIPELINE)),
            ):
                result = publish()
                client.flushall()
                runs[name] = _against_redis_benchmark(result, server.port)
        finally:
            server.stop()
    return {
        "warehouse": str(warehouse),
        "users": runs["feeds"]["keys"],
        "items": runs["warehouse"].pop("items"),
        "pipeline": PIPELINE,
        **runs,
    }


def _against_redis_benchmark(result: PublishResult, port: int) -> dict:
    value_bytes = max(1, result.bytes // max(result.keys, 1))
    sets_per_second = redis_benchmark_set(port, value_bytes=value_bytes, requests=max(result.keys, 10_000))
    publish_bps = result.bytes / result.seconds
    benchmark_bps = sets_per_second * value_bytes
    return {
        "keys": result.keys,
        "items": result.items,
        "bytes": result.bytes,
        "mean_value_bytes": value_bytes,
        "keys_per_dataset": result.keys_per_dataset,
        "publish_seconds": result.seconds,
        "publish_bytes_per_second": round(publish_bps),
        "publish_keys_per_second": round(result.keys / result.seconds),
        "redis_benchmark_set_per_second": round(sets_per_second),
        "redis_benchmark_bytes_per_second": round(benchmark_bps),
        "publish_vs_redis_benchmark": round(publish_bps / benchmark_bps, 3),
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
