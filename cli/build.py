"""`homefeed run`, `check`, `training-set` and `features`: building the warehouse and looking at what was built."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from cli.logs import stderr_into
from cli.options import with_warehouse
from cli.output import format_rows
from cli.settings import settings_from_args
from core.settings import HomefeedSettings

FEATURE_FIELDS = ("name", "entity", "dtype", "default", "description", "asset")


# --- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not settings.raw_dir.is_dir():
        print(
            f"error: raw input {settings.raw_dir} does not exist "
            "(create one with `homefeed generate` or `homefeed import-higgs`)",
            file=sys.stderr,
        )
        return 2
    return run_and_report(settings, selection=args.select, report=args.report)


def run_and_report(
    settings: HomefeedSettings, *, selection: str | None, report: str | None = None, log_path: Path | None = None
) -> int:
    """Materialize the assets (the default build or `selection`) in-process, recorded in the Dagster
    instance of `settings.dagster_home`, then print what was built or why the run failed; 0 on
    success, else 1. `log_path`: Dagster's and Spark's log lines go to that file, not the terminal."""
    from orchestration.instance import local_instance
    from orchestration.run import run_assets

    started = time.monotonic()
    build_time = settings.as_of.isoformat() if settings.as_of else "now"
    print(
        f"building assets from {settings.raw_dir} into {settings.tables_dir} as of {build_time} "
        f"(spark {settings.spark_master})",
        flush=True,
    )
    with stderr_into(log_path):
        outcome = run_assets(settings, selection=selection, instance=local_instance(settings.dagster_home))
    seconds = time.monotonic() - started
    if report:
        _write_run_report(Path(report), outcome, seconds, settings.tables_dir)
    if not outcome.success:
        _print_run_failure(outcome, seconds)
        return 1
    print(
        f"\nmaterialized {len(outcome.materialized)} assets in {seconds:.0f} s; per step: "
        + ", ".join(f"{step} {secs:.1f}s" for step, secs in outcome.step_seconds.items())
    )
    print_warehouse_summary(settings.tables_dir)
    return 0


def _print_run_failure(outcome, seconds: float) -> None:
    for failure in outcome.failures:
        print(f"FAILED step {failure.step}: {failure.message}", file=sys.stderr)
    for check in outcome.failed_checks:
        print(f"FAILED data-quality check of {check.table}:\n{check.failed}", file=sys.stderr)
    if outcome.skipped:
        print(f"not run because of the failure: {', '.join(outcome.skipped)}", file=sys.stderr)
    failed_tables = [c.table for c in outcome.failed_checks]
    if failed_tables:
        print(
            f"{', '.join(failed_tables)}: the new version that failed its checks is in the warehouse for "
            "inspection (its Delta history keeps the previous one); nothing downstream was built from it",
            file=sys.stderr,
        )
    print(f"run failed after {seconds:.0f} s; every other table is as the last run left it", file=sys.stderr)


def _write_run_report(path: Path, outcome, seconds: float, tables_dir: Path) -> None:
    """The run's outcome as JSON, for schedulers and benchmarks."""
    from jobs.delta_io import rows_in_table
    from jobs.duckdb_catalog import find_delta_tables

    document = {
        "success": outcome.success,
        "seconds": round(seconds, 2),
        "materialized": list(outcome.materialized),
        "failures": [{"step": f.step, "message": f.message} for f in outcome.failures],
        "skipped": list(outcome.skipped),
        "checks_passed": list(outcome.checks_passed),
        "failed_checks": [{"table": c.table, "check": c.check, "failed": c.failed} for c in outcome.failed_checks],
        "step_seconds": outcome.step_seconds,
        "check_phase_seconds": outcome.check_phase_seconds,
        "rows": {name: rows_in_table(p) for name, p in find_delta_tables(tables_dir).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def print_warehouse_summary(tables_dir: Path) -> None:
    from jobs.duckdb_catalog import connect_warehouse, find_delta_tables

    con = connect_warehouse(tables_dir)
    tables = find_delta_tables(tables_dir)
    width = max((len(n) for n in tables), default=5)
    print(f"\nDelta tables in {tables_dir}:")
    for name in tables:
        (rows,) = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        print(f"  {name:<{width}}  {rows:>12,}")
    if "quarantine" in {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}:
        by_rule = con.execute(
            "SELECT source_table, rule, count(*) FROM quarantine GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        if by_rule:
            print("\nquarantined rows by rule:")
            for source, rule, count in by_rule:
                print(f"  {source}.{rule}: {count:,}")
    me = _command_name()
    print(f'\nquery them:   {me} sql "SELECT action, count(*) FROM engagements GROUP BY ALL"   |   {me} duckdb')
    print("asset graph:  make dagster   (Dagster UI on http://127.0.0.1:3000)")


def _command_name() -> str:
    """How the user can call this command again: `homefeed` if it is on PATH, else its path."""
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name == "homefeed" and shutil.which("homefeed") != str(argv0.resolve()):
        try:
            return str(argv0.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(argv0)
    return "homefeed"


# --- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Every table's data-quality suites on the warehouse as it is; exit 1 if any fails."""
    from core.quality_bounds import QualityBounds
    from data_quality.specs import TABLE_SPECS
    from data_quality.validation import check_tables
    from jobs.delta_io import is_delta_table, read_delta
    from orchestration.resource_bindings import resources_from_settings

    settings = settings_from_args(args)
    tables_dir = settings.tables_dir
    names = args.table or [name for name in TABLE_SPECS if is_delta_table(tables_dir / name)]
    unknown = sorted(set(names) - set(TABLE_SPECS))
    if unknown:
        print(f"error: no suite for {', '.join(unknown)} (suites: {', '.join(TABLE_SPECS)})", file=sys.stderr)
        return 2
    if not names:
        print(f"error: no Delta tables in {tables_dir} (build them with `homefeed run`)", file=sys.stderr)
        return 2
    resources = resources_from_settings(settings)
    spark, as_of = resources["spark"].get_session(), resources["warehouse"].now()
    docs_dir = settings.data_docs_dir
    results = check_tables(
        names,
        lambda name: read_delta(spark, tables_dir / name),
        as_of=as_of,
        bounds=QualityBounds.with_overrides(settings.dq_bounds),
        docs_dir=docs_dir,
        exists=lambda name: is_delta_table(tables_dir / name),
    )
    index = docs_dir / "index.html" if docs_dir else None
    if args.json:
        print(
            json.dumps(
                {
                    "success": all(r.success for r in results),
                    "as_of": as_of.isoformat(),
                    "docs": str(index) if index else None,
                    "tables": [r.as_metadata() for r in results],
                },
                indent=2,
            )
        )
    else:
        _print_check_results(results, as_of=as_of, index=index)
    return 0 if all(r.success for r in results) else 1


def _print_check_results(results, *, as_of: datetime, index: Path | None) -> None:
    for r in results:
        status = "ok  " if r.success else "FAIL"
        detail = r.error or f"{len(r.outcomes) - len(r.failures)}/{len(r.outcomes)} expectations, {r.rows:,} rows"
        print(f"{status} {r.table:<36} {detail}")
        for outcome in r.failures:
            print(f"       {outcome.line()}")
    failed = [r.table for r in results if not r.success]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} tables passed as of {as_of.isoformat()}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    print(
        f"Great Expectations results: {index}"
        if index
        else "Great Expectations pages are written only for a warehouse on a file system"
    )


# --- training set ----------------------------------------------------------------------------


def cmd_training_set(args: argparse.Namespace) -> int:
    """The representation snapshots of the window that are not current (a run per partition of
    `representations_as_of`), then `training_examples`; every run recorded in the Dagster instance of
    `settings.dagster_home`."""
    from jobs.training_set import TrainingWindow
    from orchestration.instance import local_instance
    from orchestration.resource_bindings import resources_from_settings
    from orchestration.training_examples import training_build_time
    from orchestration.training_set import build_training_set

    settings = settings_from_args(args)
    spark = resources_from_settings(settings)["spark"].get_session()
    try:
        as_of = datetime.fromisoformat(args.as_of) if args.as_of else settings.as_of
        build_time = training_build_time(spark, settings.tables_dir, as_of)
        window = TrainingWindow.ending_at(
            build_time, days=args.days, validation_days=args.validation_days, test_days=args.test_days
        )
        summary = build_training_set(
            settings,
            spark,
            window=window,
            daily=args.representations == "daily",
            rebuild=args.rebuild,
            instance=local_instance(settings.dagster_home),
        )
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=None if args.json else 2, default=str))
    return 0


# --- features --------------------------------------------------------------------------------


def cmd_features(args: argparse.Namespace) -> int:
    from features.registry import FEATURES, registry_hash

    listed = [{field: getattr(f, field) for field in FEATURE_FIELDS} for f in FEATURES]
    if args.json:
        print(json.dumps({"registry_hash": registry_hash(), "features": listed}))
        return 0
    columns = ["entity", "name", "dtype", "default", "asset", "description"]
    print(format_rows(columns, [tuple(f[c] for c in columns) for f in listed], "table"))
    per_entity: dict[str, int] = {}
    for f in FEATURES:
        per_entity[f.entity] = per_entity.get(f.entity, 0) + 1
    print("per entity: " + ", ".join(f"{entity} {n}" for entity, n in per_entity.items()))
    print(f"registry hash: {registry_hash()}")
    return 0


# --- parsers ---------------------------------------------------------------------------------


def add_run(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(sub.add_parser("run", help="ingest the raw input and build every asset through Dagster"))
    p.add_argument("--input", help="raw input folder or s3a:// prefix (default: $HOMEFEED_RAW_INPUT or data/demo/raw)")
    p.add_argument(
        "--select", help="Dagster asset selection, e.g. 'follows', 'key:users or key:follows', 'group:graph'"
    )
    p.add_argument("--report", help="also write the outcome (steps, timings, row counts) as JSON here")
    p.set_defaults(func=cmd_run)


def add_check(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(sub.add_parser("check", help="run every table's data-quality suite; exit 1 if one fails"))
    p.add_argument("--input", help="raw input folder of the build (a generated world's end is the build time)")
    p.add_argument("--table", action="append", help="check only this table (repeatable)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_check)


def add_training_set(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(
        sub.add_parser(
            "training-set", help="build the training_examples table: labelled impressions with point-in-time features"
        )
    )
    p.add_argument(
        "--input",
        help="raw input folder the representations are rebuilt from (default: $HOMEFEED_RAW_INPUT or data/demo/raw)",
    )
    p.add_argument(
        "--as-of",
        help="build time, ISO 8601 with offset (default: $HOMEFEED_AS_OF, else the newest "
        "engagement in the warehouse); the window ends one label window earlier",
    )
    p.add_argument(
        "--days",
        type=float,
        default=4.0,
        help="days of impressions in the window (default 4); the log must reach further back, "
        "since the representations are built from what came before the window",
    )
    p.add_argument("--validation-days", type=float, default=1.0, help="of which validation (default 1)")
    p.add_argument("--test-days", type=float, default=1.0, help="and test, the last (default 1)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument(
        "--representations",
        choices=("daily", "window-start"),
        default="daily",
        help="rebuild RealGraph, SimClusters and TwHIN once per day of the window, as of its first "
        "impression (default: what serving sees), or once as of the window's start (cheaper)",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild the representations even if current")
    p.set_defaults(func=cmd_training_set)


def add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="list the feature registry (every feature table's columns)")
    p.add_argument("--json", action="store_true", help="JSON: the registry hash and one object per feature")
    p.set_defaults(func=cmd_features)
