"""benchmarks/serve.py end to end: the ranked test world published into a Redis of this module's own,
the benchmark run as a command for a second per server and level. Expected values come from Redis
and from the figures the report itself states, never from the benchmark's code; nothing here
asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from core.redis_server import start_redis

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "serve.py"
SERVERS = ("baseline", "for_you", "following", "for_you_computed", "following_computed")


def feed_values(url: str, version: int) -> dict[int, bytes]:
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"hf:v{version}:*:feed", count=1000))
    return {int(key.decode().split("{u", 1)[1].split("}", 1)[0]): r.get(key) for key in keys}


def run_benchmark(*args: str, env: dict | None = None, as_module: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.serve"] if as_module else [sys.executable, str(SCRIPT)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
    )


def test_the_benchmark_reports_every_server_at_every_level_without_errors(published_redis):
    server, version = published_redis
    url = server.url
    feeds = feed_values(url, version)
    done = run_benchmark(
        "--json", "--redis", url, "--seconds", "1", "--warmup", "0.5", "--connections", "4,1", "--users", "20"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # --json: the document alone on stdout

    assert report["version"] == version
    assert report["machine"]["cpu_count"] == os.cpu_count()
    users = report["sample_users"]["user_ids"]
    assert len(users) == report["sample_users"]["count"] == min(20, len(feeds))
    assert len(set(users)) == len(users) and set(users) <= set(feeds)

    assert report["headline_connections"] == 4
    assert report["baseline_rps"] == report["baseline"]["connections"]["4"]["rps"]
    for name in SERVERS:
        levels = report[name]["connections"]
        assert set(levels) == {"1", "4"}
        for connections, figures in levels.items():
            assert figures["connections"] == int(connections)
            assert figures["errors"] == 0 and figures["errors_by_status"] == {}, (name, figures)
            assert figures["requests"] == figures["ok"] > 0
            assert figures["duration_s"] >= 1.0  # the measured window, warm-up excluded
            assert figures["rps"] == pytest.approx(figures["ok"] / figures["duration_s"], rel=1e-3, abs=0.1)
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
            if name != "baseline":
                baseline_rps = report["baseline"]["connections"][connections]["rps"]
                assert figures["ratio_to_baseline"] == pytest.approx(figures["rps"] / baseline_rps, abs=1e-4)

    # The sample users post nothing: after each one's first page, For You serves pages again from the
    # recent pages; the computing instance keeps none.
    for connections in ("1", "4"):
        for endpoint in ("for_you", "following"):
            assert 0 < report[endpoint]["connections"][connections]["page_cache_hit_ratio"] <= 1
            assert report[f"{endpoint}_computed"]["connections"][connections]["page_cache_hit_ratio"] is None
        assert "page_cache_hit_ratio" not in report["baseline"]["connections"][connections]

    for endpoint in SERVERS[1:]:
        headline = report[endpoint]["connections"]["4"]
        assert {k: report[endpoint][k] for k in ("rps", "p50_ms", "p99_ms", "ratio_to_baseline")} == {
            k: headline[k] for k in ("rps", "p50_ms", "p99_ms", "ratio_to_baseline")
        }
        assert report[endpoint]["ratio_to_baseline"] == pytest.approx(
            report[endpoint]["rps"] / report["baseline_rps"], abs=1e-4
        )
        assert report[endpoint]["target_met"] is None  # the target is stated at 50 connections only

    # The baseline returns the stored value unchanged: its mean size lies within the sampled feeds' sizes.
    sizes = [len(feeds[u]) for u in users]
    for figures in report["baseline"]["connections"].values():
        assert min(sizes) <= figures["mean_response_bytes"] <= max(sizes)


def test_the_same_sample_of_users_on_every_run(published_redis):
    url = published_redis[0].url
    from benchmarks.serve import feed_users, published_version, sample_users

    users = feed_users(url, published_version(url))
    first, again = sample_users(users, 20, seed=0), sample_users(list(reversed(users)), 20, seed=0)
    assert first == again == sorted(first) and len(first) == min(20, len(users))
    assert sample_users(users, len(users) + 5, seed=1) == sorted(users)


def test_an_unpublished_redis_is_refused_with_exit_status_2(tmp_path):
    server = start_redis(tmp_path / "empty-redis")
    try:
        done = run_benchmark("--json", "--seconds", "1", env={"HOMEFEED_REDIS_URL": server.url}, as_module=True)
    finally:
        server.stop()
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no published version" in done.stderr and server.url in done.stderr


def test_percentiles_are_nearest_rank():
    from benchmarks.serve import percentile

    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None
