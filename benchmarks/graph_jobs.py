"""Graph, representation, candidate and feature jobs at several sizes: per-job wall time and peak
memory, as JSON.

    python -m benchmarks.graph_jobs [--sizes 10000 100000] [--workdir DIR]

Each size: generate a world, ingest it (not measured here: see generate_ingest), then run each
graph asset in its own `homefeed run --select ASSET` process, so that each job's peak memory (the
whole process tree, Spark's JVM included) is its own. `job_seconds` is Dagster's step time (without
the process start, its blocking data-quality check included, whose phases are in
`check_phase_seconds`); `process_seconds` includes starting Python and the JVM. The growth between
sizes is the time ratio divided by the user ratio: 1.0 is linear, 10 would be quadratic at 10x.

`--reuse-worlds`: a size whose `DIR/world-N` already holds the world and its bronze tables (what
`python -m benchmarks.generate_ingest --workdir DIR` leaves, same seed) is not generated and ingested
again; `python -m benchmarks.suite` chains the two this way.

Each job's figures are appended to `DIR/world-N/graph_jobs.jsonl` as it finishes. `--resume` (with
`--reuse-worlds`) keeps the jobs that file holds, marked `"kept": true`, and runs the others, so a
run that takes longer than one sitting (every job at 100K users is hours here) goes on where it
stopped; without `--resume` the file is started afresh.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.generate_ingest import AS_OF, homefeed_command
from benchmarks.measure import benchmark_workdir, measure_command

# In dependency order: job name -> the assets it materializes (a multi-asset runs as one job).
GRAPH_JOBS: dict[str, tuple[str, ...]] = {
    **{
        name: (name,)
        for name in (
            "follow_graph_two_hop",
            "mutual_follows",
            "user_follow_counts",
            "realgraph_features",
            "realgraph",
            "simclusters_producer_similarity",
            "simclusters_known_for",
            "simclusters_interested_in",
            "simclusters_producer_embeddings",
            "simclusters_tweet_embeddings",
            "simclusters_top_tweets_per_cluster",
        )
    },
    "twhin_embeddings": ("twhin_user_embeddings", "twhin_tweet_embeddings", "twhin_relations"),
    "candidates": ("candidates",),
    **{
        name: (name,)
        for name in (
            "user_features",
            "author_features",
            "tweet_features",
            "user_author_features",
            "user_tweet_features",
        )
    },
}


def _selection(assets: tuple[str, ...]) -> str:
    return " or ".join(f"key:{asset}" for asset in assets)


def _run(world: Path, selection: str) -> tuple[dict, dict]:
    report = world / f"report-{selection.split()[0].replace(':', '_')}.json"
    measured = measure_command(
        homefeed_command(
            "run",
            "--input",
            str(world / "raw"),
            "--warehouse",
            str(world / "warehouse"),
            "--select",
            selection,
            "--report",
            str(report),
        ),
        env={"HOMEFEED_AS_OF": AS_OF},
    )
    if measured.returncode != 0:
        raise SystemExit(f"`homefeed run --select {selection}` failed:\n{measured.stderr[-3000:]}")
    return {"process_seconds": measured.seconds, "peak_rss_mb": measured.peak_rss_mb}, json.loads(report.read_text())


def holds_ingested_world(world: Path) -> bool:
    """Whether `world` has every raw contract table and its ingested Delta table."""
    from core.contract import RAW_TABLES
    from core.storage import is_delta_table

    tables = world / "warehouse" / "tables"
    return all((world / "raw" / t.name).is_dir() and is_delta_table(tables / t.name) for t in RAW_TABLES)


PROGRESS_FILE = "graph_jobs.jsonl"


def measured_before(world: Path) -> dict[str, dict]:
    """{job: its figures} that earlier runs on `world` recorded in its progress file (the last
    record of a job wins)."""
    path = world / PROGRESS_FILE
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {record["job"]: record["result"] for record in records}


def record_progress(world: Path, job: str, result: dict) -> None:
    with (world / PROGRESS_FILE).open("a") as progress:
        progress.write(json.dumps({"job": job, "result": result}) + "\n")


def measure_job(world: Path, assets: tuple[str, ...]) -> dict:
    """Run the job that materializes `assets` on `world`; its figures."""
    measured, report = _run(world, _selection(assets))
    rows = {asset: report["rows"].get(asset) for asset in assets}
    checks = {asset: phases for asset, phases in report.get("check_phase_seconds", {}).items() if asset in assets}
    return {
        **measured,
        "job_seconds": round(sum(report["step_seconds"].values()), 2),
        "rows": rows if len(rows) > 1 else rows[assets[0]],
        "check_phase_seconds": checks,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def bench_size(
    users: int,
    workdir: Path,
    seed: int,
    jobs: dict[str, tuple[str, ...]],
    *,
    prerequisites: tuple[str, ...] = ("group:bronze",),
    reuse_world: bool = False,
    resume: bool = False,
) -> dict:
    """Generate a world of `users`, build `prerequisites` (not measured), then run and measure each job.
    With `reuse_world`, a world already generated and ingested in `workdir` is used as it is; with
    `resume` too, the jobs its progress file holds are kept instead of run again."""
    world = workdir / f"world-{users}"
    if not (reuse_world and holds_ingested_world(world)):
        shutil.rmtree(world, ignore_errors=True)
        generated = measure_command(
            homefeed_command("generate", "--users", str(users), "--seed", str(seed), "--out", str(world))
        )
        if generated.returncode != 0:
            raise SystemExit(generated.stderr[-3000:])
        for selection in prerequisites:
            _run(world, selection)
    kept = measured_before(world) if resume else {}
    if not resume:
        (world / PROGRESS_FILE).unlink(missing_ok=True)
    results = {}
    for job, assets in jobs.items():
        if job in kept:
            results[job] = {**kept[job], "kept": True}
        else:
            results[job] = measure_job(world, assets)
            record_progress(world, job, results[job])
        print(json.dumps({"users": users, "job": job, **results[job]}), file=sys.stderr, flush=True)
    return {"users": users, "jobs": results}


def growth(results: list[dict]) -> list[dict]:
    out = []
    for small, large in zip(results, results[1:]):
        ratio = large["users"] / small["users"]
        out.append(
            {
                "from_users": small["users"],
                "to_users": large["users"],
                "job_time_ratio_per_user_ratio": {
                    job: round(
                        large["jobs"][job]["job_seconds"] / max(small["jobs"][job]["job_seconds"], 1e-9) / ratio, 3
                    )
                    for job in large["jobs"]
                },
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", nargs="+", default=list(GRAPH_JOBS), choices=list(GRAPH_JOBS))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--reuse-worlds",
        action="store_true",
        help="use a world already generated and ingested in --workdir (same seed) as it is",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --reuse-worlds: keep the jobs an earlier run measured on each world (its "
        f"{PROGRESS_FILE}) and run the rest",
    )
    args = parser.parse_args()
    if args.resume and not args.reuse_worlds:
        parser.error("--resume needs --reuse-worlds (a regenerated world has nothing to resume)")
    jobs = {job: GRAPH_JOBS[job] for job in args.jobs}
    with benchmark_workdir(args.workdir, keep=args.keep, prefix="homefeed-graph-bench-") as workdir:
        results = [
            bench_size(n, workdir, args.seed, jobs, reuse_world=args.reuse_worlds, resume=args.resume)
            for n in sorted(args.sizes)
        ]
    print(json.dumps({"benchmark": "graph_jobs", "sizes": results, "growth": growth(results)}, indent=2))


if __name__ == "__main__":
    main()
