"""`homefeed demo`: generate a world, build, rank, publish and serve it, then show a For You page."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.build import run_and_report
from cli.logs import log_into
from cli.options import with_warehouse
from cli.output import print_row_counts
from cli.publish import cmd_status
from cli.settings import with_world_build_time
from core.settings import HomefeedSettings, load_settings

DEFAULT_DEMO_DIR = Path("data/demo")
DEMO_LOG = "demo.log"


def cmd_demo(args: argparse.Namespace) -> int:
    from core.redis_server import ensure_local_redis
    from jobs.synthetic import WorldConfig, generate_world
    from orchestration.assets.publication import PUBLICATION_GROUP
    from orchestration.assets.ranking import RANKING_GROUP
    from orchestration.assets.training import TRAINING_GROUP

    out = Path(args.out)
    log_path = out / DEMO_LOG
    log_path.unlink(missing_ok=True)
    log_into(log_path)
    print(f"full logs (Spark, Dagster, every step): {log_path}", flush=True)
    print(f"\n== 1/5 generating a synthetic world of {args.users} users (seed {args.seed}) into {out}", flush=True)
    summary = generate_world(WorldConfig(n_users=args.users, seed=args.seed), out_dir=out)
    settings = with_world_build_time(load_settings(warehouse=args.warehouse, raw_input=out / "raw"))
    print_row_counts(f"raw tables ({summary.seconds:.1f} s):", summary.rows_per_table)
    print(f"runs recorded in the Dagster instance {settings.dagster_home.resolve()} (`make dagster` shows them)")
    print("\n== 2/5 building every asset up to the feature tables through Dagster, each table checked", flush=True)
    code = run_and_report(settings, selection=None, log_path=log_path)
    if code or args.no_publish:
        return code
    print("\n== 3/5 the training set, the rankers, the ranked feeds", flush=True)
    code = run_and_report(settings, selection=f"group:{TRAINING_GROUP} or group:{RANKING_GROUP}", log_path=log_path)
    if code:
        return code
    server = ensure_local_redis(settings.redis_url, out / "redis")
    if server:
        print(f"\nstarted redis-server on port {server.port} (pid {server.process.pid}; persistence off)")
    print(f"\n== 4/5 publishing the ranked feeds to {settings.redis_url}", flush=True)
    code = run_and_report(settings, selection=f"group:{PUBLICATION_GROUP}", log_path=log_path)
    if code:
        return code
    cmd_status(argparse.Namespace(redis_url=settings.redis_url, json=False, warehouse=None, input=None))
    print(f"\n== 5/5 serving the timelines on http://127.0.0.1:{args.port}", flush=True)
    return _serve_demo(settings, out, port=args.port)


def _serve_demo(settings: HomefeedSettings, out: Path, *, port: int) -> int:
    """Start the API (left running, like the demo's Redis) and show a For You page of a sample user."""
    import httpx

    from core import redis_layout as rl
    from core.settings import DEVELOPMENT_SECRET
    from jobs.publish import connect
    from serving.api_server import ensure_api
    from serving.auth import mint_token

    secret = settings.secret.get_secret_value()
    environment = {
        "HOMEFEED_REDIS_URL": settings.redis_url,
        "HOMEFEED_REDIS_CLUSTER": str(int(settings.redis_cluster)),
        "HOMEFEED_SECRET": secret,
    }
    if secret == DEVELOPMENT_SECRET:
        environment["HOMEFEED_ENV"] = "development"
        print("HOMEFEED_SECRET is not set: the demo's API runs with HOMEFEED_ENV=development and the built-in secret")
    server = ensure_api(port=port, environment=environment, log_path=out / "api.log")
    if server.process is None:
        print(f"an API already answers on port {port}: showing its timelines (stop it to serve new code)")
    else:
        print(f"started the API (pid {server.process.pid}, log {out / 'api.log'})")
    client = connect(settings.redis_url, cluster=settings.redis_cluster)
    version = int(client.hget(rl.CURRENT, "version"))
    user = min(rl.FEEDS.id_of(k) for k in client.scan_iter(match=f"{rl.version_prefix(version)}:*:feed", count=1000))
    token = mint_token(user, secret, now=time.time())
    # `homefeed token` refuses the built-in secret as the API does, unless told it is development.
    token_command = (
        "HOMEFEED_ENV=development " if secret == DEVELOPMENT_SECRET else ""
    ) + f".venv/bin/homefeed token {user}"
    response = httpx.get(
        f"{server.base_url}/v1/users/{user}/timelines/for_you",
        params={"count": 10},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    print(f"\nFor You of user {user}, first 10 entries:")
    for position, entry in enumerate(response.json()["items"], 1):
        print(f"  {position:>2}. {_describe_entry(entry)}")
    print(f"""
API docs:      {server.base_url}/docs
explain page:  {server.base_url}/debug/users/{user}/for_you?access_token={token}
a token:       curl -H "Authorization: Bearer $({token_command})" {server.base_url}/v1/users/{user}/timelines/for_you
Dagster UI:    make dagster, then http://127.0.0.1:3000""")
    return 0


def _describe_entry(entry: dict) -> str:
    if entry["type"] == "who_to_follow":
        return "who to follow: " + ", ".join(f"@{u['handle']}" for u in entry["users"])
    tweets = entry["tweets"] if entry["type"] == "conversation" else [entry]
    parts = [f"@{t['author']['handle']}: {(t['text'] or '')[:60]}" for t in tweets]
    label = {"conversation": "conversation", "promoted": "promoted"}.get(entry["type"])
    sources = ",".join(tweets[-1]["sources"])
    return (f"[{label}] " if label else "") + " <- ".join(reversed(parts)) + f"  ({sources})"


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(sub.add_parser("demo", help="generate a world, build, rank, publish and serve it"))
    p.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(DEFAULT_DEMO_DIR))
    p.add_argument(
        "--no-publish", action="store_true", help="stop after the feature tables (no training, ranking or publication)"
    )
    p.set_defaults(func=cmd_demo)
