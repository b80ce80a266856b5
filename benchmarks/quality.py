"""Data-quality validation time: one pass with examples (GX result format SUMMARY) against the
two-pass validation the checks use (`data_quality.validation.run_suite`: BOOLEAN_ONLY, then
SUMMARY for failures only), on the same persisted frames in the same run, as JSON.

    python -m benchmarks.quality --warehouse W [--as-of 2026-11-01T00:00:00+00:00] [--table T ...]

`--as-of` is the build time the warehouse was built at (freshness and coverage are measured from it;
default: the `as_of` of its ranked_feeds, else now).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark import StorageLevel

from core.quality_bounds import QualityBounds
from data_quality.specs import TABLE_SPECS
from data_quality.suites import rows_suite
from data_quality.validation import gx_context, release_checkpoint, run_suite, validate_once
from data_quality.views import DERIVED_PREFIX, rows_view
from jobs.delta_io import is_delta_table, read_delta

DEFAULT_TABLES = ("users", "follows", "tweets", "candidates", "tweet_features", "realgraph_features")


def time_table(spark, tables_dir: Path, name: str, *, as_of: datetime, repeats: int = 2) -> dict:
    spec = TABLE_SPECS[name]
    read = lambda table: read_delta(spark, tables_dir / table)  # noqa: E731
    # The frame as the checks hold it (data_quality.validation.check_table).
    rows = rows_view(read(name), spec, read, as_of=as_of).localCheckpoint(
        eager=True, storageLevel=StorageLevel.DISK_ONLY
    )
    try:
        count = rows.count()
        derived = [c for c in rows.columns if c.startswith(DERIVED_PREFIX)]
        context = gx_context()  # before the suite: GX builds suites inside the active context
        suite = rows_suite(spec, QualityBounds(), derived=derived, empty=count == 0)
        seconds = {"summary": [], "two_pass": []}
        for _ in range(repeats):  # alternated, so both see the same warm-up and the same neighbours
            started = time.perf_counter()
            validate_once(context, rows, suite, "SUMMARY")
            seconds["summary"].append(time.perf_counter() - started)
            started = time.perf_counter()
            outcomes, _ = run_suite(context, rows, suite)
            seconds["two_pass"].append(time.perf_counter() - started)
    finally:
        release_checkpoint(rows)
    summary, two_pass = min(seconds["summary"]), min(seconds["two_pass"])
    return {
        "table": name,
        "rows": count,
        "expectations": len(outcomes),
        "passed": all(o.success for o in outcomes),
        "summary_seconds": round(summary, 3),
        "two_pass_seconds": round(two_pass, 3),
        "speedup": round(summary / two_pass, 2),
    }


def _as_of(tables_dir: Path) -> datetime:
    from orchestration.publication import table_build_metadata

    feeds = tables_dir / "ranked_feeds"
    built = table_build_metadata(feeds).get("built_as_of") if is_delta_table(feeds) else None
    return datetime.fromisoformat(built) if built else datetime.now(UTC)


def main() -> None:
    from core.settings import load_settings
    from orchestration.resource_bindings import resources_from_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--as-of", type=datetime.fromisoformat)
    parser.add_argument("--table", action="append", choices=sorted(TABLE_SPECS))
    args = parser.parse_args()
    settings = load_settings(warehouse=args.warehouse)
    spark = resources_from_settings(settings)["spark"].get_session()
    tables_dir = settings.tables_dir
    as_of = args.as_of or _as_of(tables_dir)
    results = [
        time_table(spark, tables_dir, name, as_of=as_of)
        for name in (args.table or DEFAULT_TABLES)
        if is_delta_table(tables_dir / name)
    ]
    print(
        json.dumps(
            {"benchmark": "quality", "warehouse": str(args.warehouse), "as_of": as_of.isoformat(), "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
