"""A soak of the timeline API: sustained load at half its measured capacity for several minutes, with
client events posted alongside, checking that nothing fails and the server's memory stays flat.

    python -m benchmarks.soak --json [--redis URL] [--minutes 5] [--fraction 0.5]

Against the version published in Redis (after `make demo`), the real app runs under uvicorn in its
own process (the settings of benchmarks/serve.py). First its capacity: closed-loop For You requests
over 8 connections for `--probe-seconds`. Then open-loop load at `--fraction` of that rate for
`--minutes`: 70% For You, 20% Following, 10% POST /v1/events (an impression and a like of a tweet
from the user's feed), from the same sample of users. Every 5 s the server's resident memory
(/proc/<pid>/status VmRSS) and Redis's used_memory are sampled. The JSON has the request counts
and failures per kind, p50/p99 per minute, the memory samples, and the RSS growth between the end
of the first minute (caches warm) and the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import os
import random
import secrets
import tempfile
import time
from collections import Counter, defaultdict

from benchmarks.serve import (
    HOST,
    LoadSpec,
    Refused,
    _read_response,
    endpoint_path,
    feed_users,
    http_request,
    percentile,
    published_version,
    run_load,
    running_server,
    sample_users,
    server_environment,
    uvicorn_command,
)

SAMPLE_SECONDS = 5.0
MIX = (("for_you", 0.7), ("following", 0.2), ("events", 0.1))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def event_request(user: int, tweet_id: int, *, port: int, token: str) -> bytes:
    body = json.dumps(
        {
            "events": [
                {"type": "impression", "tweet_id": tweet_id, "dwell_ms": 800},
                {"type": "like", "tweet_id": tweet_id},
            ]
        }
    ).encode()
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


async def paced_load(
    requests: dict[str, list[bytes]], *, port: int, rate: float, seconds: float, connections: int, seed: int
) -> dict:
    """Open-loop load: `connections` senders, each starting a request every connections / rate
    seconds (a late one starts at once), the kind drawn by MIX; latencies per kind and minute."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    latencies: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    statuses: dict[str, Counter] = defaultdict(Counter)
    start = time.perf_counter()
    interval = connections / rate

    async def sender(index: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        next_at = start + index * interval / connections
        while next_at < start + seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            kind = rng.choices(kinds, weights)[0]
            request = rng.choice(requests[kind])
            sent = time.perf_counter()
            try:
                writer.write(request)
                status, _, _ = await asyncio.wait_for(_read_response(reader), 10)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            statuses[kind][str(status)] += 1
            latencies[kind][int((sent - start) // 60)].append(time.perf_counter() - sent)
            next_at += interval
        writer.close()

    await asyncio.gather(*(sender(i) for i in range(connections)))
    return {"statuses": statuses, "latencies": latencies}


def soak(*, redis_url: str, minutes: float, fraction: float, probe_seconds: float, n_users: int, seed: int) -> dict:
    import redis

    from core.redis_server import free_port
    from serving.auth import mint_token

    version = published_version(redis_url)
    users = sample_users(feed_users(redis_url, version), n_users, seed=seed)
    if not users:
        raise Refused(f"version {version} in Redis at {redis_url} holds no feeds")
    client = redis.Redis.from_url(redis_url)
    secret = secrets.token_urlsafe(32)
    tokens = {user: mint_token(user, secret, now=time.time() + minutes * 60) for user in users}
    port = free_port()
    requests = soak_requests(client, version, users, tokens, port=port)
    with (
        tempfile.TemporaryDirectory(prefix="hf-soak-") as log_dir,
        running_server(
            uvicorn_command("serving.api:app_from_environment", port=port, workers=1),
            env=server_environment(redis_url, secret),
            ready_path="/readyz",
            port=port,
            log_dir=Path(log_dir),
        ) as server,
    ):
        probe = run_load(
            LoadSpec(
                port=port, requests=tuple(requests["for_you"]), connections=8, warmup_seconds=1.0, seconds=probe_seconds
            )
        )
        capacity = probe.statuses["200"] / probe.duration_s
        rate = max(1.0, capacity * fraction)
        outcome, samples = asyncio.run(
            sampled_paced_load(
                requests, port=port, rate=rate, minutes=minutes, seed=seed, pid=server.pid, client=client
            )
        )
    per_kind = figures_per_kind(outcome)
    return {
        "benchmark": "soak",
        "version": version,
        "users": len(users),
        "minutes": minutes,
        "capacity_rps": round(capacity, 1),
        "target_rps": round(rate, 1),
        "fraction": fraction,
        "achieved_rps": round(sum(k["requests"] for k in per_kind.values()) / (minutes * 60), 1),
        "errors": sum(k["errors"] for k in per_kind.values()),
        "kinds": per_kind,
        "rss_mb": rss_growth(samples),
        "samples": samples,
        "machine": {"cpu_count": os.cpu_count()},
    }


def soak_requests(
    client, version: int, users: list[int], tokens: dict[int, str], *, port: int
) -> dict[str, list[bytes]]:
    """The requests of each kind of MIX: a For You and a Following page per user, and an event
    request for each of the first 20 tweets of the user's feed."""
    from core import redis_layout as rl

    first_tweets = {
        u: rl.decode_feed_columns(client.get(rl.FEEDS.key(version, u)))["tweet_id"][:20].tolist() for u in users
    }
    requests = {
        kind: [http_request(endpoint_path(kind, u, count=35), port=port, token=tokens[u]) for u in users]
        for kind in ("for_you", "following")
    }
    requests["events"] = [event_request(u, t, port=port, token=tokens[u]) for u in users for t in first_tweets[u]]
    return requests


async def sampled_paced_load(
    requests: dict[str, list[bytes]], *, port: int, rate: float, minutes: float, seed: int, pid: int, client
) -> tuple[dict, list[dict]]:
    """`paced_load` over 16 connections for `minutes`, sampling every SAMPLE_SECONDS the server's
    resident memory and Redis's used memory: the load's outcome and the samples."""
    samples: list[dict] = []

    async def sample() -> None:
        began = time.perf_counter()
        while time.perf_counter() - began < minutes * 60 + 1:
            samples.append(
                {
                    "t_s": round(time.perf_counter() - began, 1),
                    "rss_mb": round(rss_mb(pid), 1),
                    "redis_used_mb": round(client.info("memory")["used_memory"] / 2**20, 1),
                }
            )
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.ensure_future(sample())
    outcome = await paced_load(requests, port=port, rate=rate, seconds=minutes * 60, connections=16, seed=seed)
    sampler.cancel()
    return outcome, samples


def figures_per_kind(outcome: dict) -> dict[str, dict]:
    """Per request kind: the requests, their statuses, the errors (neither 200 nor 202) and the
    requests, p50 and p99 of each minute."""
    per_kind = {}
    for kind, statuses in outcome["statuses"].items():
        minutes_figures = {}
        for minute, values in sorted(outcome["latencies"][kind].items()):
            values.sort()
            minutes_figures[str(minute)] = {
                "requests": len(values),
                "p50_ms": round(1000 * percentile(values, 50), 2),
                "p99_ms": round(1000 * percentile(values, 99), 2),
            }
        per_kind[kind] = {
            "requests": sum(statuses.values()),
            "statuses": dict(statuses),
            "errors": sum(n for s, n in statuses.items() if s not in ("200", "202")),
            "per_minute": minutes_figures,
        }
    return per_kind


def rss_growth(samples: list[dict]) -> dict[str, float]:
    """The server's resident memory: first, after the first minute (caches warm), last, max, and
    the growth between the end of the first minute and the end."""
    warm = [s for s in samples if s["t_s"] >= 60] or samples
    return {
        "first": samples[0]["rss_mb"],
        "after_first_minute": warm[0]["rss_mb"],
        "last": samples[-1]["rss_mb"],
        "max": max(s["rss_mb"] for s in samples),
        "growth_after_first_minute": round(samples[-1]["rss_mb"] - warm[0]["rss_mb"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default=os.environ.get("HOMEFEED_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the measured capacity (default 0.5)")
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    args = parser.parse_args(argv)
    try:
        document = soak(
            redis_url=args.redis,
            minutes=args.minutes,
            fraction=args.fraction,
            probe_seconds=args.probe_seconds,
            n_users=args.users,
            seed=args.seed,
        )
    except Refused as error:
        print(f"benchmarks/soak.py: {error}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
