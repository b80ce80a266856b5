"""`homefeed setup`: what a machine needs before the first build."""

from __future__ import annotations

import argparse

from cli.settings import settings_from_args


def cmd_setup(args: argparse.Namespace) -> int:
    from core.setup_checks import check_java, ensure_chromium, ensure_redis_server
    from jobs.spark_session import resolve_delta_jars, resolve_s3a_jars

    settings = settings_from_args(args)
    print(f"java: {check_java()} (needs 17+)")
    jars = resolve_delta_jars(settings.cache_dir)
    print(f"delta jars: {len(jars)} in {jars[0].parent}")
    if args.object_storage or settings.object_storage_conf is not None:
        s3a = resolve_s3a_jars(settings.cache_dir)
        print(f"s3a jars (object storage): {len(s3a)} in {s3a[0].parent}")
    print(f"redis-server: {ensure_redis_server()}")
    print(f"chromium: {ensure_chromium()} (the explain page's browser test)")
    return 0


def add_setup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setup", help="check Java, cache the Delta jars, make sure redis-server exists")
    p.add_argument(
        "--object-storage",
        action="store_true",
        help="cache Hadoop's S3A jars too (done anyway when HOMEFEED_WAREHOUSE is an s3a:// URL)",
    )
    p.set_defaults(func=cmd_setup)
