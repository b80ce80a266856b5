"""Flags that several subcommands share."""

from __future__ import annotations

import argparse


def with_warehouse(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--warehouse", help="warehouse root (default: $HOMEFEED_WAREHOUSE or ./warehouse)")
    return p


def with_redis_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--redis", dest="redis_url", help="Redis URL (default: $HOMEFEED_REDIS_URL)")
    p.add_argument(
        "--redis-cluster",
        dest="redis_cluster",
        action="store_true",
        default=None,
        help="the Redis URL names one node of a Redis Cluster (default: $HOMEFEED_REDIS_CLUSTER)",
    )
    return p


def with_redis(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    with_redis_url(p).add_argument("--json", action="store_true", help="print the result as JSON")
    return p
