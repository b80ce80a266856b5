"""Timeline API throughput and latency on loopback, next to a minimal FastAPI baseline, as JSON.

    python benchmarks/serve.py --json          # or: python -m benchmarks.serve --json
    python benchmarks/serve.py --redis redis://127.0.0.1:6379/0 --seconds 10 --connections 1,50 --users 200

Against the version currently published in Redis (`--redis`, else $HOMEFEED_REDIS_URL; e.g. after
`make demo`), three servers are measured one after the other, each at every `--connections` level:

* `baseline`: a FastAPI app of this file with one route, `GET /raw/{user_id}`, returning the
  user's published feed value as stored (one Redis GET, redis.asyncio), the least any API over
  these feeds does per request;
* `for_you` and `following`: the real app (`serving.api:app_from_environment`), with a secret
  generated here and HOMEFEED_ENV=production;
* `for_you_computed` and `following_computed`: the same endpoints on a second instance of the real
  app with HOMEFEED_PAGE_CACHE_SECONDS=0, so that every page runs the whole pipeline. The sample
  users send no events, so on the first instance a user's page is computed once per page-cache
  period and served again until then (`serving.page_cache`); each run on it reports the share it
  served so (`page_cache_hit_ratio`, from the server's /metrics).

Both apps run under the same uvicorn command (127.0.0.1, same workers, loop, HTTP parser, log level,
no access log), each in its own process. The load comes from a third process: N keep-alive
connections, each sending one request at a time, looping over the sample users (users with a feed
in the current version, a seeded sample of `--users`) with tokens minted for them, for a warm-up
and then `--seconds` of measurement. rps counts 200 responses; p50/p99 are over their latencies;
`ratio_to_baseline` = rps / baseline rps at the same connection count, so the ratio compares two
numbers from the same machine at the same time. The issue's target (For You at 50 connections:
ratio >= 0.5 and p99 < 25 ms) is reported in `target_met`, never enforced.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run by path: make the repository's packages importable
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from contextlib import ExitStack, asynccontextmanager, contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from fastapi import FastAPI, Request, Response  # noqa: E402

from core import redis_layout as rl  # noqa: E402
from core.redis_server import stop_process  # noqa: E402

HOST = "127.0.0.1"
ENDPOINTS = ("for_you", "following", "for_you_computed", "following_computed")
# run -> (server, the endpoint of its path): the *_computed runs are on an API that keeps no recent pages
RUNS = {
    "baseline": ("baseline", "baseline"),
    "for_you": ("api", "for_you"),
    "following": ("api", "following"),
    "for_you_computed": ("api_computed", "for_you"),
    "following_computed": ("api_computed", "following"),
}
TARGET_CONNECTIONS = 50
TARGET_RATIO_TO_BASELINE = 0.5
TARGET_P99_MS = 25.0
REQUEST_TIMEOUT_SECONDS = 10.0
STARTUP_TIMEOUT_SECONDS = 60.0


class Refused(RuntimeError):
    """The benchmark cannot run against this Redis (exit status 2)."""


# --- the baseline app (imported by uvicorn in its own process) ------------------------------------


def create_baseline_app(redis_url: str) -> FastAPI:
    """One route returning a user's published feed value unchanged: one Redis GET per request."""
    import redis.asyncio as aioredis

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = aioredis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        version = await client.hget(rl.CURRENT, "version")
        if version is None:
            raise RuntimeError(f"no published version in Redis at {redis_url}")
        app.state.client, app.state.version = client, int(version)
        yield
        await client.aclose()

    app = FastAPI(title="homefeed serving baseline", lifespan=lifespan)

    @app.get("/raw/{user_id}")
    async def raw(user_id: int, request: Request) -> Response:
        state = request.app.state
        value = await state.client.get(rl.FEEDS.key(state.version, user_id))
        if value is None:
            return Response(status_code=404)
        return Response(value, media_type="application/octet-stream")

    return app


def baseline_app_from_environment() -> FastAPI:
    """`uvicorn --factory benchmarks.serve:baseline_app_from_environment`, reading $HOMEFEED_REDIS_URL."""
    return create_baseline_app(os.environ["HOMEFEED_REDIS_URL"])


# --- what to request -------------------------------------------------------------------------------


def published_version(redis_url: str) -> int:
    import redis

    try:
        version = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0).hget(rl.CURRENT, "version")
    except redis.RedisError as error:
        raise Refused(f"cannot read Redis at {redis_url}: {error}") from None
    if version is None:
        raise Refused(
            f"no published version in Redis at {redis_url} (hash {rl.CURRENT} has no 'version'): "
            "run `make demo` or `homefeed publish` first, or point --redis at a published Redis"
        )
    return int(version)


def feed_users(redis_url: str, version: int) -> list[int]:
    """Every user with a feed key in `version`, ascending."""
    import redis

    client = redis.Redis.from_url(redis_url)
    pattern = f"{rl.version_prefix(version)}:*:{rl.FEEDS.suffix}"
    return sorted(rl.FEEDS.id_of(key) for key in client.scan_iter(match=pattern, count=1000))


def sample_users(users: list[int], n: int, *, seed: int) -> list[int]:
    """Up to `n` of `users`, the same ones for the same input and seed, ascending."""
    return sorted(random.Random(seed).sample(sorted(users), min(n, len(users))))


def http_request(path: str, *, port: int, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\n\r\n"
    ).encode("latin-1")


def endpoint_path(endpoint: str, user_id: int, *, count: int) -> str:
    if endpoint == "baseline":
        return f"/raw/{user_id}"
    return f"/v1/users/{user_id}/timelines/{endpoint}?count={count}"


# --- the load generator (runs in a process of its own) ---------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    port: int
    requests: tuple[bytes, ...]  # one per sample user; connection i starts at its own offset
    connections: int
    warmup_seconds: float
    seconds: float


@dataclass
class LoadResult:
    ok_latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # "200", "503", ..., "connection_error"
    ok_bytes: int = 0
    duration_s: float = 0.0


class ProtocolError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, body bytes, server closes) of one HTTP/1.1 response with a Content-Length."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
    }
    if "content-length" not in headers:
        raise ProtocolError(f"no Content-Length in {status_line!r}")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split(" ", 2)[1]), len(body), headers.get("connection", "").lower() == "close"


async def _connection(spec: LoadSpec, index: int, measure_from: float, stop_at: float, result: LoadResult) -> None:
    requests = spec.requests
    position = index * len(requests) // spec.connections
    reader = writer = None
    while time.perf_counter() < stop_at:
        request = requests[position % len(requests)]
        position += 1
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, spec.port)
            writer.write(request)
            status, size, closes = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_SECONDS)
            outcome = str(status)
        except (
            TimeoutError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ProtocolError,
            ValueError,
        ):
            outcome, size, closes = "connection_error", 0, True
        latency = time.perf_counter() - started
        if started >= measure_from:
            result.statuses[outcome] += 1
            if outcome == "200":
                result.ok_latencies_s.append(latency)
                result.ok_bytes += size
        if closes and writer is not None:
            writer.close()
            reader = writer = None
        if outcome == "connection_error":
            await asyncio.sleep(0.01)  # no busy loop against a server that is gone
    if writer is not None:
        writer.close()


async def _load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    measure_from = time.perf_counter() + spec.warmup_seconds
    stop_at = measure_from + spec.seconds
    await asyncio.gather(*(_connection(spec, i, measure_from, stop_at, result) for i in range(spec.connections)))
    result.duration_s = time.perf_counter() - measure_from  # requests in flight at stop_at finish inside it
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    """Closed-loop load on 127.0.0.1:`spec.port`; returns when the time is up and every request is answered."""
    try:
        import uvloop

        return uvloop.run(_load(spec))
    except ImportError:
        return asyncio.run(_load(spec))


# --- figures ---------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of ascending values; None of none."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(result: LoadResult, connections: int) -> dict:
    latencies_ms = sorted(s * 1000 for s in result.ok_latencies_s)
    ok = len(latencies_ms)
    errors = {status: n for status, n in sorted(result.statuses.items()) if status != "200"}
    return {
        "connections": connections,
        "requests": sum(result.statuses.values()),
        "ok": ok,
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "duration_s": round(result.duration_s, 3),
        "rps": round(ok / result.duration_s, 1) if result.duration_s > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies_ms, 50)),
        "p90_ms": _ms(percentile(latencies_ms, 90)),
        "p99_ms": _ms(percentile(latencies_ms, 99)),
        "max_ms": _ms(percentile(latencies_ms, 100)),
        "mean_response_bytes": round(result.ok_bytes / ok) if ok else 0,
    }


def with_ratio(figures: dict, baseline: dict) -> dict:
    ratio = round(figures["rps"] / baseline["rps"], 4) if baseline["rps"] else None
    return {**figures, "ratio_to_baseline": ratio}


def target_met(figures: dict, connections: int) -> dict | None:
    """The issue's target, judged only where it was measured (at TARGET_CONNECTIONS)."""
    if connections != TARGET_CONNECTIONS:
        return None
    ratio = figures["ratio_to_baseline"]
    return {
        "ratio_to_baseline": ratio is not None and ratio >= TARGET_RATIO_TO_BASELINE,
        "p99_ms": figures["p99_ms"] is not None and figures["p99_ms"] < TARGET_P99_MS,
    }


def report(*, runs: dict[str, dict[int, dict]], version: int, users: list[int], redis_url: str, settings: dict) -> dict:
    """The JSON document: the headline figures at the largest connection count, then every level."""
    headline = max(runs["baseline"])
    document = {
        "benchmark": "serve",
        "version": version,
        "redis": redis_url,
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": settings,
        "sample_users": {"count": len(users), "user_ids": users},
        "headline_connections": headline,
        "baseline_rps": runs["baseline"][headline]["rps"],
        "target": {
            "endpoint": "for_you",
            "connections": TARGET_CONNECTIONS,
            "ratio_to_baseline_min": TARGET_RATIO_TO_BASELINE,
            "p99_ms_max": TARGET_P99_MS,
        },
        "baseline": {"connections": {str(c): runs["baseline"][c] for c in sorted(runs["baseline"])}},
    }
    for endpoint in ENDPOINTS:
        levels = {c: with_ratio(runs[endpoint][c], runs["baseline"][c]) for c in sorted(runs[endpoint])}
        top = levels[headline]
        document[endpoint] = {
            "rps": top["rps"],
            "p50_ms": top["p50_ms"],
            "p99_ms": top["p99_ms"],
            "ratio_to_baseline": top["ratio_to_baseline"],
            "errors": top["errors"],
            "target_met": target_met(top, headline),
            "connections": {str(c): figures for c, figures in levels.items()},
        }
    return document


def _cell(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.2f}':>{width}}"


def table(document: dict) -> str:
    lines = [
        f"published version {document['version']}, {document['sample_users']['count']} sample users, "
        f"{document['machine']['cpu_count']} CPUs, {document['settings']['seconds']} s per run",
        f"{'server':<10} {'conns':>5} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'errors':>6} {'cached':>6}",
    ]
    for name in ("baseline", *ENDPOINTS):
        label = name.replace("_computed", "*")  # every page computed
        for c, f in document[name]["connections"].items():
            cells = [_cell(f["p50_ms"], 8), _cell(f["p99_ms"], 8), _cell(f.get("ratio_to_baseline"), 6)]
            cached = f.get("page_cache_hit_ratio")
            lines.append(
                f"{label:<10} {c:>5} {f['rps']:>9.1f} {' '.join(cells)} {f['errors']:>6} "
                f"{'-' if cached is None else f'{cached:.0%}':>6}"
            )
    lines.append("*: the API with HOMEFEED_PAGE_CACHE_SECONDS=0 (every page computed); cached: pages served again")
    for endpoint in ENDPOINTS:
        met = document[endpoint]["target_met"]
        if met is not None:
            lines.append(f"{endpoint} target met at {TARGET_CONNECTIONS} connections: {met}")
    return "\n".join(lines)


# --- servers ---------------------------------------------------------------------------------------


def uvicorn_options(workers: int) -> dict[str, str]:
    """The uvicorn settings both apps run under."""
    return {"host": HOST, "workers": str(workers), "loop": "uvloop", "http": "httptools", "log-level": "warning"}


def uvicorn_command(factory: str, *, port: int, workers: int) -> list[str]:
    options = [arg for name, value in uvicorn_options(workers).items() for arg in (f"--{name}", value)]
    return [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port), *options, "--no-access-log"]


@contextmanager
def running_server(
    command: list[str], *, env: dict[str, str], ready_path: str, port: int, log_dir: Path
) -> Iterator[subprocess.Popen]:
    """The server `command` in its own process until the block ends; ready once `ready_path` answers 200."""
    import httpx

    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command[2:5])} exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://{HOST}:{port}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no 200 from {ready_path} within {STARTUP_TIMEOUT_SECONDS:.0f} s: {log_path.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield process
    finally:
        stop_process(process)


def server_environment(redis_url: str, secret: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HOMEFEED_REDIS_URL": redis_url,
        "HOMEFEED_SECRET": secret,
        "HOMEFEED_ENV": "production",
    }


# --- the run ---------------------------------------------------------------------------------------


def benchmark(
    *,
    redis_url: str,
    seconds: float,
    warmup_seconds: float,
    connections: list[int],
    n_users: int,
    count: int,
    workers: int,
    seed: int,
) -> dict:
    from core.redis_server import free_port
    from serving.auth import mint_token

    version = published_version(redis_url)
    users = sample_users(feed_users(redis_url, version), n_users, seed=seed)
    if not users:
        raise Refused(f"version {version} in Redis at {redis_url} holds no feeds")
    secret = secrets.token_urlsafe(32)
    tokens = {user: mint_token(user, secret, now=time.time()) for user in users}
    env = server_environment(redis_url, secret)
    # server name -> (uvicorn factory, port, path answering 200 once it serves)
    servers = {
        "baseline": ("benchmarks.serve:baseline_app_from_environment", free_port(), f"/raw/{users[0]}", env),
        "api": ("serving.api:app_from_environment", free_port(), "/readyz", env),
        "api_computed": (
            "serving.api:app_from_environment",
            free_port(),
            "/readyz",
            {**env, "HOMEFEED_PAGE_CACHE_SECONDS": "0"},
        ),
    }
    runs: dict[str, dict[int, dict]] = {name: {} for name in RUNS}
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hf-bench-serve-")))
        for factory, port, ready_path, server_env in servers.values():
            stack.enter_context(
                running_server(
                    uvicorn_command(factory, port=port, workers=workers),
                    env=server_env,
                    ready_path=ready_path,
                    port=port,
                    log_dir=log_dir,
                )
            )
        load_process = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        for c in connections:
            for name, (server, endpoint) in RUNS.items():
                port = servers[server][1]
                spec = LoadSpec(
                    port=port,
                    connections=c,
                    warmup_seconds=warmup_seconds,
                    seconds=seconds,
                    requests=tuple(
                        http_request(endpoint_path(endpoint, u, count=count), port=port, token=tokens[u]) for u in users
                    ),
                )
                before = page_cache_counts(port, endpoint) if server != "baseline" else None
                runs[name][c] = summarize(load_process.submit(run_load, spec).result(), c)
                if before is not None:
                    runs[name][c]["page_cache_hit_ratio"] = hit_ratio(before, page_cache_counts(port, endpoint))
                print(json.dumps({name: runs[name][c]}), file=sys.stderr, flush=True)
    settings = {
        "seconds": seconds,
        "warmup_seconds": warmup_seconds,
        "connections": connections,
        "users": n_users,
        "seed": seed,
        "count": count,
        "uvicorn": {**uvicorn_options(workers), "access-log": "off"},
    }
    return report(runs=runs, version=version, users=users, redis_url=redis_url, settings=settings)


def page_cache_counts(port: int, pipeline: str) -> dict[str, float]:
    """The API's homefeed_page_cache_total of `pipeline` by result (hit, miss), from its /metrics."""
    import httpx

    counts = {"hit": 0.0, "miss": 0.0}
    for line in httpx.get(f"http://{HOST}:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith("homefeed_page_cache_total{") and f'pipeline="{pipeline}"' in line:
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('result="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def hit_ratio(before: dict[str, float], after: dict[str, float]) -> float | None:
    """The share of the pages between two readings served from the recent pages (warm-up
    included); None when the server neither hit nor missed (the page cache off)."""
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    return round(hits / (hits + misses), 4) if hits + misses else None


def connection_counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"connection counts are positive integers, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--redis",
        default=os.environ.get("HOMEFEED_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis holding the published version (default: $HOMEFEED_REDIS_URL)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server and level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument(
        "--connections",
        type=connection_counts,
        default=[1, TARGET_CONNECTIONS],
        help="concurrent connections, comma-separated (default 1,50)",
    )
    parser.add_argument("--users", type=int, default=200, help="sample users (with a feed in the current version)")
    parser.add_argument("--count", type=int, default=35, help="timeline items per request")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of each server")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of users")
    parser.add_argument("--json", action="store_true", help="print only the JSON document on stdout")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.users < 1 or args.workers < 1:
        parser.error("--seconds and --users and --workers must be positive, --warmup not negative")
    try:
        document = benchmark(
            redis_url=args.redis,
            seconds=args.seconds,
            warmup_seconds=args.warmup,
            connections=args.connections,
            n_users=args.users,
            count=args.count,
            workers=args.workers,
            seed=args.seed,
        )
    except Refused as error:
        print(f"benchmarks/serve.py: {error}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    if not args.json:
        print(table(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
