"""`homefeed serve` and `homefeed token`: the timeline API and its bearer tokens."""

from __future__ import annotations

import argparse
import sys

from cli.options import with_redis_url
from cli.settings import settings_from_args
from core.settings import load_settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.api import create_app

    settings = settings_from_args(args)
    try:
        app = create_app(settings)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"serving on http://{args.host}:{args.port} (API docs: http://{args.host}:{args.port}/docs), "
        f"reading {settings.redis_url}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    import time

    from serving.api import check_secret
    from serving.auth import mint_token

    settings = load_settings()
    try:
        secret = check_secret(settings)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(mint_token(args.user_id, secret, now=time.time(), ttl_seconds=int(args.days * 86400), admin=args.admin))
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = with_redis_url(
        sub.add_parser(
            "serve", help="serve the timeline API (For You, Following, Lists) from the published Redis version"
        )
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)


def add_token(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="mint a bearer token for USER_ID (signed with $HOMEFEED_SECRET)")
    p.add_argument("user_id", type=int)
    p.add_argument("--admin", action="store_true", help="an admin token (the explain pages of any user)")
    p.add_argument("--days", type=float, default=30.0, help="validity in days (default 30)")
    p.set_defaults(func=cmd_token)
