"""The `homefeed` command: the edge of the program, where settings and flags are read."""

from __future__ import annotations

import argparse
import logging
import sys

from cli import build, demo, evaluate, publish, query, serve, setup, world
from orchestration.errors import without_jvm_frames

# The subcommands in the order `homefeed --help` lists them.
SUBCOMMANDS = (
    setup.add_setup,
    world.add_generate,
    world.add_import_higgs,
    build.add_run,
    build.add_check,
    publish.add_publish,
    publish.add_rollback,
    publish.add_status,
    serve.add_serve,
    publish.add_drain_events,
    serve.add_token,
    demo.add_demo,
    evaluate.add_eval,
    build.add_training_set,
    build.add_features,
    query.add_sql,
    query.add_duckdb,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homefeed", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for ours in ("homefeed", "jobs", "orchestration", "evaluation"):
        logging.getLogger(ours).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except Exception as exc:  # the edge: one clear line instead of a traceback, unless -v
        if args.verbose:
            raise
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            print(f"error: bad configuration: {exc}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {without_jvm_frames(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
