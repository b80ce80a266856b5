"""`homefeed eval graph|candidates|ranking`: measurements against a synthetic world's ground truth (or,
for ranking, a Higgs import's held-out days)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

from core.settings import load_settings


def _synthetic_world(path: str) -> Path | None:
    world = Path(path)
    if not (world / "truth" / "metadata.json").exists():
        print(f"error: {world} is not a `homefeed generate` output (no truth/metadata.json)", file=sys.stderr)
        return None
    return world


def cmd_eval_graph(args: argparse.Namespace) -> int:
    from evaluation.graph import evaluate_graph

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_graph(
        load_settings(), world, Path(args.warehouse) if args.warehouse else None, rebuild=args.rebuild
    )
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def cmd_eval_candidates(args: argparse.Namespace) -> int:
    from evaluation.candidates import evaluate_candidates

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_candidates(
        load_settings(),
        world,
        Path(args.warehouse) if args.warehouse else None,
        horizon=timedelta(hours=args.horizon_hours),
        rebuild=args.rebuild,
    )
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def cmd_eval_ranking(args: argparse.Namespace) -> int:
    if args.higgs:
        return _eval_higgs_ranking(args)
    from evaluation.ranking import evaluate_ranking

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_ranking(
        load_settings(),
        world,
        Path(args.warehouse) if args.warehouse else None,
        days=args.days,
        daily=args.representations == "daily",
        rebuild=args.rebuild,
    )
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def _eval_higgs_ranking(args: argparse.Namespace) -> int:
    from evaluation.higgs_ranking import evaluate_higgs_ranking
    from evaluation.ranking import REPORT_NAME
    from models.report import render_ranking_report, write_ranking_report
    from orchestration.resource_bindings import resources_from_settings

    imported = Path(args.higgs)
    if not (imported / "raw" / "engagements").is_dir():
        print(f"error: {imported} is not a `homefeed import-higgs` output (no raw/engagements)", file=sys.stderr)
        return 2
    settings = load_settings()
    result = evaluate_higgs_ranking(resources_from_settings(settings)["spark"].get_session(), imported)
    out_dir = Path(args.warehouse) if args.warehouse else imported / "eval-ranking"
    report = write_ranking_report(
        out_dir / REPORT_NAME, render_ranking_report(result, title="homefeed ranking evaluation: Higgs")
    )
    result["report"] = str(report)
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure against a synthetic world's ground truth")
    eval_sub = p.add_subparsers(dest="what", required=True)
    _add_eval_graph(eval_sub)
    _add_eval_candidates(eval_sub)
    _add_eval_ranking(eval_sub)


def _add_eval_graph(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("graph", help="KnownFor NMI, held-out follow recall@50, RealGraph next-period AUC (JSON)")
    p.add_argument("--world", required=True, help="a `homefeed generate` output directory")
    p.add_argument("--warehouse", help="where the evaluation build goes (default: WORLD/eval/warehouse)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_graph)


def _add_eval_candidates(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("candidates", help="pool recall of next-day engagements per source vs popularity (JSON)")
    p.add_argument("--world", required=True, help="a `homefeed generate` output directory")
    p.add_argument("--warehouse", help="where the evaluation build goes (default: WORLD/eval-candidates/warehouse)")
    p.add_argument(
        "--horizon-hours",
        type=float,
        default=24.0,
        help="the build is cut this long before the world's end; what follows is held out",
    )
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_candidates)


def _add_eval_ranking(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser(
        "ranking", help="heavy ranker heads vs the true probabilities, feed NDCG@35 vs baselines, HTML report (JSON)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", help="a `homefeed generate` output directory")
    source.add_argument(
        "--higgs", help="a `homefeed import-higgs` output directory: feed metrics only, authors as items"
    )
    p.add_argument(
        "--warehouse",
        help="where the evaluation build goes (default: WORLD/eval-ranking/warehouse; "
        "with --higgs, where the report goes: DIR/eval-ranking)",
    )
    p.add_argument(
        "--days",
        type=float,
        default=5.0,
        help="training window in days ending one label window before the world's end; the last "
        "day is the test split, the one before it validation",
    )
    p.add_argument(
        "--representations",
        choices=("daily", "window-start"),
        default="daily",
        help="the training set's representations: rebuilt for each day (as served), or once at the "
        "window's start (faster)",
    )
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_ranking)
