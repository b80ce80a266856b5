"""The `homefeed` command: the edge of the program, where settings and flags are read."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from orchestration.errors import without_jvm_frames
from core.settings import HomefeedSettings, load_settings

log = logging.getLogger("homefeed")

DEFAULT_DEMO_DIR = Path("data/demo")


def _settings(args: argparse.Namespace) -> HomefeedSettings:
    return with_world_build_time(load_settings(
        warehouse=getattr(args, "warehouse", None),
        raw_input=getattr(args, "input", None),
        redis_url=getattr(args, "redis_url", None),
        redis_cluster=getattr(args, "redis_cluster", None),
    ))


def with_world_build_time(settings: HomefeedSettings) -> HomefeedSettings:
    """A build of a `homefeed generate` world (its `truth/` beside the raw input) defaults to the
    world's end as its build time, not the wall clock: the world's tweets are weeks old today, and
    every freshness window would be empty. HOMEFEED_AS_OF still wins."""
    from orchestration.evaluation import world_end_time

    world = settings.raw_dir.parent
    if settings.as_of is not None or not (world / "truth" / "metadata.json").is_file():
        return settings
    return settings.model_copy(update={"as_of": world_end_time(world)})


# --- setup -----------------------------------------------------------------------------------

def cmd_setup(args: argparse.Namespace) -> int:
    from jobs.spark_session import resolve_delta_jars, resolve_s3a_jars
    from core.setup_checks import check_java, ensure_chromium, ensure_redis_server

    settings = _settings(args)
    print(f"java: {check_java()} (needs 17+)")
    jars = resolve_delta_jars(settings.cache_dir)
    print(f"delta jars: {len(jars)} in {jars[0].parent}")
    if args.object_storage or settings.object_storage_conf is not None:
        s3a = resolve_s3a_jars(settings.cache_dir)
        print(f"s3a jars (object storage): {len(s3a)} in {s3a[0].parent}")
    print(f"redis-server: {ensure_redis_server()}")
    print(f"chromium: {ensure_chromium()} (the explain page's browser test)")
    return 0


# --- worlds ----------------------------------------------------------------------------------

def cmd_generate(args: argparse.Namespace) -> int:
    from jobs.synthetic import WorldConfig, generate_world

    summary = generate_world(WorldConfig(n_users=args.users, seed=args.seed), out_dir=Path(args.out))
    _print_row_counts(f"generated {args.users} users (seed {args.seed}) into {args.out}/raw", summary.rows_per_table)
    print(f"ground truth: {args.out}/truth   ({summary.seconds:.1f} s)")
    return 0


def cmd_import_higgs(args: argparse.Namespace) -> int:
    from jobs.higgs_import import import_higgs

    summary = import_higgs(src_dir=Path(args.src), out_dir=Path(args.out))
    _print_row_counts(f"imported {args.src} into {args.out}/raw", summary.rows_per_table)
    if summary.dropped:
        print("dropped while converting: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.dropped.items())))
    return 0


def _print_row_counts(title: str, rows_per_table: dict[str, int]) -> None:
    print(title)
    width = max(len(name) for name in rows_per_table)
    for name, rows in rows_per_table.items():
        print(f"  {name:<{width}}  {rows:>12,}")


# --- run -------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.raw_dir.is_dir():
        print(f"error: raw input {settings.raw_dir} does not exist "
              "(create one with `homefeed generate` or `homefeed import-higgs`)", file=sys.stderr)
        return 2
    return _run_and_report(settings, selection=args.select, report=args.report)


def _dagster_instance():
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None


def _run_and_report(settings: HomefeedSettings, *, selection: str | None, report: str | None = None) -> int:
    from orchestration.run import run_assets

    started = time.monotonic()
    build_time = settings.as_of.isoformat() if settings.as_of else "now"
    print(f"building assets from {settings.raw_dir} into {settings.tables_dir} as of {build_time} "
          f"(spark {settings.spark_master})", flush=True)
    outcome = run_assets(settings, selection=selection, instance=_dagster_instance())
    seconds = time.monotonic() - started
    if report:
        _write_run_report(Path(report), outcome, seconds, settings.tables_dir)
    if not outcome.success:
        for failure in outcome.failures:
            print(f"FAILED step {failure.step}: {failure.message}", file=sys.stderr)
        for check in outcome.failed_checks:
            print(f"FAILED data-quality check of {check.table}:\n{check.failed}", file=sys.stderr)
        if outcome.skipped:
            print(f"not run because of the failure: {', '.join(outcome.skipped)}", file=sys.stderr)
        failed_tables = [c.table for c in outcome.failed_checks]
        if failed_tables:
            print(f"{', '.join(failed_tables)}: the new version that failed its checks is in the warehouse for "
                  "inspection (its Delta history keeps the previous one); nothing downstream was built from it",
                  file=sys.stderr)
        print(f"run failed after {seconds:.0f} s; every other table is as the last run left it", file=sys.stderr)
        return 1
    print(f"\nmaterialized {len(outcome.materialized)} assets in {seconds:.0f} s; per step: "
          + ", ".join(f"{step} {secs:.1f}s" for step, secs in outcome.step_seconds.items()))
    print_warehouse_summary(settings.tables_dir)
    return 0


def _write_run_report(path: Path, outcome, seconds: float, tables_dir: Path) -> None:
    """The run's outcome as JSON, for schedulers and benchmarks."""
    from jobs.duckdb_catalog import find_delta_tables
    from jobs.delta_io import rows_in_table

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
    from orchestration.resources import resources_from_settings

    settings = _settings(args)
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
    results = check_tables(names, lambda name: read_delta(spark, tables_dir / name), as_of=as_of,
                           bounds=QualityBounds.with_overrides(settings.dq_bounds), docs_dir=docs_dir,
                           exists=lambda name: is_delta_table(tables_dir / name))
    index = docs_dir / "index.html" if docs_dir else None
    if args.json:
        print(json.dumps({"success": all(r.success for r in results), "as_of": as_of.isoformat(),
                          "docs": str(index) if index else None, "tables": [r.as_metadata() for r in results]},
                         indent=2))
    else:
        for r in results:
            status = "ok  " if r.success else "FAIL"
            detail = r.error or f"{len(r.outcomes) - len(r.failures)}/{len(r.outcomes)} expectations, {r.rows:,} rows"
            print(f"{status} {r.table:<36} {detail}")
            for outcome in r.failures:
                print(f"       {outcome.line()}")
        failed = [r.table for r in results if not r.success]
        print(f"\n{len(results) - len(failed)}/{len(results)} tables passed as of {as_of.isoformat()}"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
        print(f"Great Expectations results: {index}" if index else
              "Great Expectations pages are written only for a warehouse on a file system")
    return 0 if all(r.success for r in results) else 1


# --- publication -----------------------------------------------------------------------------

def cmd_publish(args: argparse.Namespace) -> int:
    """Check every table a publication reads, then publish the feeds and the other serving datasets to
    Redis as a new version and make it current."""
    from core.quality_bounds import QualityBounds
    from jobs.delta_io import is_delta_table
    from orchestration.publication import FEEDS_TABLE, check_published_tables, publish_to_redis
    from orchestration.resources import resources_from_settings

    settings = _settings(args)
    table = settings.tables_dir / FEEDS_TABLE
    if not args.skip_check and is_delta_table(table):
        resources = resources_from_settings(settings)
        check_published_tables(resources["spark"].get_session(), settings.tables_dir,
                               as_of=resources["warehouse"].now(), bounds=QualityBounds.with_overrides(settings.dq_bounds))
    result = publish_to_redis(settings.redis_url, settings.tables_dir, cluster=settings.redis_cluster,
                              grace_seconds=settings.publish_grace_seconds)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"published version {result.version} (previous {result.previous_version}): {result.users:,} feeds, "
              f"{result.items:,} items, {result.keys:,} keys, {result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s, checksum {result.checksum}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from jobs.publish import connect, rollback

    settings = _settings(args)
    pointer = rollback(connect(settings.redis_url, cluster=settings.redis_cluster))
    print(json.dumps(pointer, indent=2) if args.json else
          f"rolled back to version {pointer['version']} (from {pointer['rolled_back_from']})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from jobs.publish import connect, publication_status

    settings = _settings(args)
    status = publication_status(connect(settings.redis_url, cluster=settings.redis_cluster))
    if args.json:
        print(json.dumps(status, indent=2))
    elif status["published_version"] is None:
        print("nothing is published")
    else:
        print(f"version {status['published_version']} (previous {status['previous_version']}), "
              f"{status['users_published']:,} users, published at {status['published_at']}")
    return 0


# --- serving ---------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.api import create_app

    settings = _settings(args)
    try:
        app = create_app(settings)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"serving on http://{args.host}:{args.port} (API docs: http://{args.host}:{args.port}/docs), "
          f"reading {settings.redis_url}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_drain_events(args: argparse.Namespace) -> int:
    """Move the API's event log from Redis into the raw input, where the next build ingests it."""
    from jobs.publish import connect
    from serving.events import drain_event_log

    settings = _settings(args)
    result = drain_event_log(connect(settings.redis_url, cluster=settings.redis_cluster), settings.raw_dir)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        rows = ", ".join(f"{table} {n:,}" for table, n in sorted(result.rows_per_table.items())) or "no rows"
        print(f"drained {result.events:,} events into {settings.raw_dir} ({rows}; {len(result.files)} files)")
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


# --- demo ------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.synthetic import WorldConfig, generate_world
    from orchestration.assets.publication import PUBLICATION_GROUP
    from orchestration.assets.ranking import RANKING_GROUP
    from orchestration.assets.training import TRAINING_GROUP

    from core.redis_server import ensure_local_redis

    out = Path(args.out)
    print(f"== 1/5 generating a synthetic world of {args.users} users (seed {args.seed}) into {out}", flush=True)
    summary = generate_world(WorldConfig(n_users=args.users, seed=args.seed), out_dir=out)
    settings = with_world_build_time(load_settings(warehouse=args.warehouse, raw_input=out / "raw"))
    _print_row_counts(f"raw tables ({summary.seconds:.1f} s):", summary.rows_per_table)
    print("\n== 2/5 building every asset up to the feature tables through Dagster, each table checked", flush=True)
    code = _run_and_report(settings, selection=None)
    if code or args.no_publish:
        return code
    print("\n== 3/5 the training set, the rankers, the ranked feeds", flush=True)
    code = _run_and_report(settings, selection=f"group:{TRAINING_GROUP} or group:{RANKING_GROUP}")
    if code:
        return code
    server = ensure_local_redis(settings.redis_url, out / "redis")
    if server:
        print(f"\nstarted redis-server on port {server.port} (pid {server.process.pid}; persistence off)")
    print(f"\n== 4/5 publishing the ranked feeds to {settings.redis_url}", flush=True)
    code = _run_and_report(settings, selection=f"group:{PUBLICATION_GROUP}")
    if code:
        return code
    cmd_status(argparse.Namespace(redis_url=settings.redis_url, json=False, warehouse=None, input=None))
    print(f"\n== 5/5 serving the timelines on http://127.0.0.1:{args.port}", flush=True)
    return _serve_demo(settings, out, port=args.port)


def _serve_demo(settings: HomefeedSettings, out: Path, *, port: int) -> int:
    """Start the API (left running, like the demo's Redis) and show a For You page of a sample user."""
    import httpx

    from jobs.publish import connect
    from core.settings import DEVELOPMENT_SECRET
    from core import redis_layout as rl
    from serving.api_server import ensure_api
    from serving.auth import mint_token

    secret = settings.secret.get_secret_value()
    environment = {"HOMEFEED_REDIS_URL": settings.redis_url, "HOMEFEED_REDIS_CLUSTER": str(int(settings.redis_cluster)),
                   "HOMEFEED_SECRET": secret}
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
    token_command = ("HOMEFEED_ENV=development " if secret == DEVELOPMENT_SECRET else "") + f".venv/bin/homefeed token {user}"
    response = httpx.get(f"{server.base_url}/v1/users/{user}/timelines/for_you", params={"count": 10},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
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


# --- evaluation ------------------------------------------------------------------------------

def _synthetic_world(path: str) -> Path | None:
    world = Path(path)
    if not (world / "truth" / "metadata.json").exists():
        print(f"error: {world} is not a `homefeed generate` output (no truth/metadata.json)", file=sys.stderr)
        return None
    return world


def cmd_eval_graph(args: argparse.Namespace) -> int:
    from orchestration.evaluation import evaluate_graph

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_graph(load_settings(), world, Path(args.warehouse) if args.warehouse else None,
                            rebuild=args.rebuild)
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def cmd_eval_candidates(args: argparse.Namespace) -> int:
    from orchestration.candidate_evaluation import evaluate_candidates

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_candidates(load_settings(), world, Path(args.warehouse) if args.warehouse else None,
                                 horizon=timedelta(hours=args.horizon_hours), rebuild=args.rebuild)
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def cmd_eval_ranking(args: argparse.Namespace) -> int:
    if args.higgs:
        return _eval_higgs_ranking(args)
    from orchestration.ranking_evaluation import evaluate_ranking

    world = _synthetic_world(args.world)
    if world is None:
        return 2
    result = evaluate_ranking(load_settings(), world, Path(args.warehouse) if args.warehouse else None,
                              days=args.days, daily=args.representations == "daily", rebuild=args.rebuild)
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


def _eval_higgs_ranking(args: argparse.Namespace) -> int:
    from models.report import render_ranking_report, write_ranking_report
    from orchestration.higgs_ranking_evaluation import evaluate_higgs_ranking
    from orchestration.ranking_evaluation import REPORT_NAME
    from orchestration.resources import resources_from_settings

    imported = Path(args.higgs)
    if not (imported / "raw" / "engagements").is_dir():
        print(f"error: {imported} is not a `homefeed import-higgs` output (no raw/engagements)", file=sys.stderr)
        return 2
    settings = load_settings()
    result = evaluate_higgs_ranking(resources_from_settings(settings)["spark"].get_session(), imported)
    out_dir = Path(args.warehouse) if args.warehouse else imported / "eval-ranking"
    report = write_ranking_report(out_dir / REPORT_NAME,
                                  render_ranking_report(result, title="homefeed ranking evaluation: Higgs"))
    result["report"] = str(report)
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


# --- training set ----------------------------------------------------------------------------

def cmd_training_set(args: argparse.Namespace) -> int:
    from jobs.training_set import TrainingWindow
    from orchestration.resources import resources_from_settings
    from orchestration.training_set import build_training_set, training_build_time

    settings = _settings(args)
    spark = resources_from_settings(settings)["spark"].get_session()
    try:
        as_of = datetime.fromisoformat(args.as_of) if args.as_of else settings.as_of
        build_time = training_build_time(spark, settings.tables_dir, as_of)
        window = TrainingWindow.ending_at(build_time, days=args.days, validation_days=args.validation_days,
                                          test_days=args.test_days)
        summary = build_training_set(settings, spark, window=window, daily=args.representations == "daily",
                                     rebuild=args.rebuild)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=None if args.json else 2, default=str))
    return 0


# --- features --------------------------------------------------------------------------------

FEATURE_FIELDS = ("name", "entity", "dtype", "default", "description", "asset")


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


# --- analysts --------------------------------------------------------------------------------

def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def format_rows(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], indent=None)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_jsonable(v) for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(_jsonable(v)) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from jobs.duckdb_catalog import connect_warehouse, query_rows

    settings = _settings(args)
    con = connect_warehouse(settings.tables_dir)
    try:
        columns, rows = query_rows(con, args.query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_rows(columns, rows, args.format))
    return 0


def cmd_duckdb(args: argparse.Namespace) -> int:
    from jobs.duckdb_catalog import connect_warehouse, find_delta_tables

    settings = _settings(args)
    if args.db:
        con = connect_warehouse(settings.tables_dir, database=args.db)
        con.close()
        names = ", ".join(find_delta_tables(settings.tables_dir)) or "none"
        print(f"wrote {args.db}: views {names}, quarantine. Open it with any DuckDB client.")
        return 0
    con = connect_warehouse(settings.tables_dir)
    return _interactive_shell(con, sorted(find_delta_tables(settings.tables_dir)))


def _interactive_shell(con, table_names: list[str]) -> int:
    import duckdb

    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    print(f"homefeed DuckDB shell. Views: {', '.join(table_names) or 'none'}.")
    print("End statements with ';'. .tables lists views, .quit leaves.")
    buffer: list[str] = []
    while True:
        try:
            line = input("homefeed> " if not buffer else "      ...> ")
        except EOFError:
            print()
            return 0
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            return 0
        if not buffer and stripped == ".tables":
            print("\n".join(table_names + ["quarantine"]))
            continue
        buffer.append(line)
        if not stripped.endswith(";"):
            continue
        statement, buffer = "\n".join(buffer), []
        try:
            result = con.execute(statement)
            if result.description:
                columns = [d[0] for d in result.description]
                print(format_rows(columns, result.fetchall(), "table"))
        except duckdb.Error as exc:
            print(f"error: {exc}")


# --- parser ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homefeed", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_warehouse(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--warehouse", help="warehouse root (default: $HOMEFEED_WAREHOUSE or ./warehouse)")
        return p

    p = sub.add_parser("setup", help="check Java, cache the Delta jars, make sure redis-server exists")
    p.add_argument("--object-storage", action="store_true",
                   help="cache Hadoop's S3A jars too (done anyway when HOMEFEED_WAREHOUSE is an s3a:// URL)")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("generate", help="write a synthetic world (raw data-contract tables + ground truth)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("import-higgs", help="convert the Higgs Twitter dataset into the data contract")
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import_higgs)

    p = with_warehouse(sub.add_parser("run", help="ingest the raw input and build every asset through Dagster"))
    p.add_argument("--input", help="raw input folder or s3a:// prefix (default: $HOMEFEED_RAW_INPUT or data/demo/raw)")
    p.add_argument("--select", help="Dagster asset selection, e.g. 'follows', 'key:users or key:follows', 'group:graph'")
    p.add_argument("--report", help="also write the outcome (steps, timings, row counts) as JSON here")
    p.set_defaults(func=cmd_run)

    p = with_warehouse(sub.add_parser("check", help="run every table's data-quality suite; exit 1 if one fails"))
    p.add_argument("--input", help="raw input folder of the build (a generated world's end is the build time)")
    p.add_argument("--table", action="append", help="check only this table (repeatable)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_check)

    def with_redis_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--redis", dest="redis_url", help="Redis URL (default: $HOMEFEED_REDIS_URL)")
        p.add_argument("--redis-cluster", dest="redis_cluster", action="store_true", default=None,
                       help="the Redis URL names one node of a Redis Cluster (default: $HOMEFEED_REDIS_CLUSTER)")
        return p

    def with_redis(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_redis_url(p).add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    p = with_redis(with_warehouse(sub.add_parser(
        "publish", help="check ranked_feeds, publish it to Redis as a new version, switch to it")))
    p.add_argument("--input", help="raw input folder of the build (a generated world's end is the build time)")
    p.add_argument("--skip-check", action="store_true", help="publish without running the data-quality suites of the published tables first")
    p.set_defaults(func=cmd_publish)
    p = with_redis(sub.add_parser("rollback", help="make the previous published version current again"))
    p.set_defaults(func=cmd_rollback)
    p = with_redis(sub.add_parser("status", help="the published version, the previous one, users, time"))
    p.set_defaults(func=cmd_status)

    p = with_redis_url(sub.add_parser(
        "serve", help="serve the timeline API (For You, Following, Lists) from the published Redis version"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
    p = with_redis_url(sub.add_parser(
        "drain-events", help="move the API's client-event log from Redis into the raw input (--input)"))
    p.add_argument("--input", help="the raw input folder or s3a:// prefix the next build reads (default: $HOMEFEED_RAW_INPUT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drain_events)
    p = sub.add_parser("token", help="mint a bearer token for USER_ID (signed with $HOMEFEED_SECRET)")
    p.add_argument("user_id", type=int)
    p.add_argument("--admin", action="store_true", help="an admin token (the explain pages of any user)")
    p.add_argument("--days", type=float, default=30.0, help="validity in days (default 30)")
    p.set_defaults(func=cmd_token)

    p = with_warehouse(sub.add_parser("demo", help="generate a world, build, rank, publish and serve it"))
    p.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(DEFAULT_DEMO_DIR))
    p.add_argument("--no-publish", action="store_true",
                   help="stop after the feature tables (no training, ranking or publication)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("eval", help="measure against a synthetic world's ground truth")
    eval_sub = p.add_subparsers(dest="what", required=True)
    p = eval_sub.add_parser("graph", help="KnownFor NMI, held-out follow recall@50, RealGraph next-period AUC (JSON)")
    p.add_argument("--world", required=True, help="a `homefeed generate` output directory")
    p.add_argument("--warehouse", help="where the evaluation build goes (default: WORLD/eval/warehouse)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_graph)
    p = eval_sub.add_parser("candidates", help="pool recall of next-day engagements per source vs popularity (JSON)")
    p.add_argument("--world", required=True, help="a `homefeed generate` output directory")
    p.add_argument("--warehouse", help="where the evaluation build goes (default: WORLD/eval-candidates/warehouse)")
    p.add_argument("--horizon-hours", type=float, default=24.0,
                   help="the build is cut this long before the world's end; what follows is held out")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_candidates)
    p = eval_sub.add_parser("ranking", help="heavy ranker heads vs the true probabilities, feed NDCG@35 vs baselines, "
                                            "HTML report (JSON)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", help="a `homefeed generate` output directory")
    source.add_argument("--higgs", help="a `homefeed import-higgs` output directory: feed metrics only, authors as items")
    p.add_argument("--warehouse", help="where the evaluation build goes (default: WORLD/eval-ranking/warehouse; "
                                       "with --higgs, where the report goes: DIR/eval-ranking)")
    p.add_argument("--days", type=float, default=5.0,
                   help="training window in days ending one label window before the world's end; the last "
                        "day is the test split, the one before it validation")
    p.add_argument("--representations", choices=("daily", "window-start"), default="daily",
                   help="the training set's representations: rebuilt for each day (as served), or once at the "
                        "window's start (faster)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation warehouse even if current")
    p.set_defaults(func=cmd_eval_ranking)

    p = with_warehouse(sub.add_parser(
        "training-set", help="build the training_examples table: labelled impressions with point-in-time features"))
    p.add_argument("--input", help="raw input folder the representations are rebuilt from "
                                   "(default: $HOMEFEED_RAW_INPUT or data/demo/raw)")
    p.add_argument("--as-of", help="build time, ISO 8601 with offset (default: $HOMEFEED_AS_OF, else the newest "
                                   "engagement in the warehouse); the window ends one label window earlier")
    p.add_argument("--days", type=float, default=4.0,
                   help="days of impressions in the window (default 4); the log must reach further back, "
                        "since the representations are built from what came before the window")
    p.add_argument("--validation-days", type=float, default=1.0, help="of which validation (default 1)")
    p.add_argument("--test-days", type=float, default=1.0, help="and test, the last (default 1)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.add_argument("--representations", choices=("daily", "window-start"), default="daily",
                   help="rebuild RealGraph, SimClusters and TwHIN once per day of the window, as of its first "
                        "impression (default: what serving sees), or once as of the window's start (cheaper)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the representations even if current")
    p.set_defaults(func=cmd_training_set)

    p = sub.add_parser("features", help="list the feature registry (every feature table's columns)")
    p.add_argument("--json", action="store_true", help="JSON: the registry hash and one object per feature")
    p.set_defaults(func=cmd_features)

    p = with_warehouse(sub.add_parser("sql", help="run a DuckDB query over the warehouse's tables"))
    p.add_argument("query")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_sql)

    p = with_warehouse(sub.add_parser("duckdb", help="interactive DuckDB shell (or --db FILE) over the tables"))
    p.add_argument("--db", help="write the views into this DuckDB database file instead of a shell")
    p.set_defaults(func=cmd_duckdb)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for ours in ("homefeed", "jobs", "orchestration"):
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
