"""`homefeed publish`, `rollback`, `status` and `drain-events`: the warehouse and Redis, both ways."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from cli.options import with_redis, with_redis_url, with_warehouse
from cli.settings import settings_from_args


def cmd_publish(args: argparse.Namespace) -> int:
    """Check every table a publication reads, then publish the feeds and the other serving datasets to
    Redis as a new version and make it current."""
    from core.quality_bounds import QualityBounds
    from jobs.delta_io import is_delta_table
    from orchestration.publication import FEEDS_TABLE, check_published_tables, publish_to_redis
    from orchestration.resource_bindings import resources_from_settings

    settings = settings_from_args(args)
    table = settings.tables_dir / FEEDS_TABLE
    if not args.skip_check and is_delta_table(table):
        resources = resources_from_settings(settings)
        check_published_tables(
            resources["spark"].get_session(),
            settings.tables_dir,
            as_of=resources["warehouse"].now(),
            bounds=QualityBounds.with_overrides(settings.dq_bounds),
        )
    result = publish_to_redis(
        settings.redis_url,
        settings.tables_dir,
        cluster=settings.redis_cluster,
        grace_seconds=settings.publish_grace_seconds,
    )
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(
            f"published version {result.version} (previous {result.previous_version}): {result.users:,} feeds, "
            f"{result.items:,} items, {result.keys:,} keys, {result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s, checksum {result.checksum}"
        )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from jobs.publish import connect, rollback

    settings = settings_from_args(args)
    pointer = rollback(connect(settings.redis_url, cluster=settings.redis_cluster))
    print(
        json.dumps(pointer, indent=2)
        if args.json
        else f"rolled back to version {pointer['version']} (from {pointer['rolled_back_from']})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from jobs.publish import connect, publication_status

    settings = settings_from_args(args)
    status = publication_status(connect(settings.redis_url, cluster=settings.redis_cluster))
    if args.json:
        print(json.dumps(status, indent=2))
    elif status["published_version"] is None:
        print("nothing is published")
    else:
        print(
            f"version {status['published_version']} (previous {status['previous_version']}), "
            f"{status['users_published']:,} users, published at {status['published_at']}"
        )
    return 0


def cmd_drain_events(args: argparse.Namespace) -> int:
    """Move the API's event log from Redis into the raw input, where the next build ingests it."""
    from jobs.publish import connect
    from serving.events import drain_event_log

    settings = settings_from_args(args)
    result = drain_event_log(connect(settings.redis_url, cluster=settings.redis_cluster), settings.raw_dir)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        rows = ", ".join(f"{table} {n:,}" for table, n in sorted(result.rows_per_table.items())) or "no rows"
        print(f"drained {result.events:,} events into {settings.raw_dir} ({rows}; {len(result.files)} files)")
    return 0


def add_publish(sub: argparse._SubParsersAction) -> None:
    p = with_redis(
        with_warehouse(
            sub.add_parser("publish", help="check ranked_feeds, publish it to Redis as a new version, switch to it")
        )
    )
    p.add_argument("--input", help="raw input folder of the build (a generated world's end is the build time)")
    p.add_argument(
        "--skip-check",
        action="store_true",
        help="publish without running the data-quality suites of the published tables first",
    )
    p.set_defaults(func=cmd_publish)


def add_rollback(sub: argparse._SubParsersAction) -> None:
    p = with_redis(sub.add_parser("rollback", help="make the previous published version current again"))
    p.set_defaults(func=cmd_rollback)


def add_status(sub: argparse._SubParsersAction) -> None:
    p = with_redis(sub.add_parser("status", help="the published version, the previous one, users, time"))
    p.set_defaults(func=cmd_status)


def add_drain_events(sub: argparse._SubParsersAction) -> None:
    p = with_redis_url(
        sub.add_parser("drain-events", help="move the API's client-event log from Redis into the raw input (--input)")
    )
    p.add_argument(
        "--input", help="the raw input folder or s3a:// prefix the next build reads (default: $HOMEFEED_RAW_INPUT)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drain_events)
