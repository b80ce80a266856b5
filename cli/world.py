"""`homefeed generate` and `homefeed import-higgs`: the raw input of a build, synthetic or real."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.output import print_row_counts


def cmd_generate(args: argparse.Namespace) -> int:
    from jobs.synthetic import WorldConfig, generate_world

    summary = generate_world(WorldConfig(n_users=args.users, seed=args.seed), out_dir=Path(args.out))
    print_row_counts(f"generated {args.users} users (seed {args.seed}) into {args.out}/raw", summary.rows_per_table)
    print(f"ground truth: {args.out}/truth   ({summary.seconds:.1f} s)")
    return 0


def cmd_import_higgs(args: argparse.Namespace) -> int:
    from jobs.higgs_import import import_higgs

    summary = import_higgs(src_dir=Path(args.src), out_dir=Path(args.out))
    print_row_counts(f"imported {args.src} into {args.out}/raw", summary.rows_per_table)
    if summary.dropped:
        print("dropped while converting: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.dropped.items())))
    return 0


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write a synthetic world (raw data-contract tables + ground truth)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate)


def add_import_higgs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-higgs", help="convert the Higgs Twitter dataset into the data contract")
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import_higgs)
