"""Every benchmark in one run (`make bench`): one JSON document and a short markdown table.

    python -m benchmarks.suite [--sizes 10000 100000] [--workdir DIR] [--only NAME ...]
                               [--models-from WAREHOUSE] [--out benchmarks/results/latest.json] [--resume]
    python -m benchmarks.suite --combine RUN.json RUN.json ... [--out FILE]

Each benchmark runs as its own subprocess (`python -m benchmarks.<module>`, run and measured by
benchmarks/suite_run.py), in dependency order, on one generated and built world per size kept in
the work folder (`DIR/world-N`):

    generate_ingest     generate and ingest each size (the worlds the others reuse)
    graph_jobs          graph, candidate and feature jobs on those worlds (--reuse-worlds)
    ranking_inference   heavy ranker candidates/s and efficiency against a matmul peak
    train_rankers       only when there are no promoted rankers to copy: the training set and the
                        rankers on the smallest world (`homefeed run --select group:training`)
    ranking_batch@N     ranked_feeds on each size's warehouse, with those rankers
    publish@N           each size's publication against redis-benchmark (one process per size, so
                        the suite's peak memory of its process tree, its redis-server included,
                        is that size's)
    serve               the largest size published (`orchestration.publication.publish_to_redis`)
                        to a redis-server the suite starts, the API against its same-run baseline

and, only when named in --only: generate_world (benchmarks/bench_generate.py), twhin, quality
(on the smallest size), soak and ranking_training (against the serve step's Redis or on synthetic
examples). `--only` names groups (`publish`) or single steps (`publish@10000`); a step whose inputs
a previous run left in --workdir runs on them.

A benchmark that fails is recorded as {"status": "failed", "returncode", "stderr_tail"} and the
others go on (those that need its output are recorded as skipped); the exit status is 1 if any
did not succeed. The document is rewritten after every step, so an interrupted run keeps what it
measured, and `--resume` (with the same --sizes and --workdir) goes on from there: the steps the
document records as succeeded are kept, each with "kept_from" {started_at, git_commit} of the run
that measured it, and the others run:

    {"suite": "homefeed", "started_at", "machine": {cpus, memory_gb, python, platform}, "git_commit",
     "git_dirty", "command", "sizes", "benchmarks": {name: {"status": "ok", "command", "seconds",
     "peak_rss_mb" (the benchmark's whole process tree, sampled by the suite), "users" (per-size
     steps), "finished_at", "result": <the benchmark's own JSON>}}, "summary": [rows]}

Without --workdir the worlds go to a temporary folder removed at the end (at 100K users they hold
91M candidate rows and their features); a --workdir is kept.

`--combine` runs nothing: from the documents of runs at different sizes (a size a sitting when the
whole run takes longer) it prints one table whose scaling factors go across them, and writes their
combined document ({"runs": [each run's command, started_at, git_commit, machine, sizes],
"benchmarks": {"name (sizes)": record}, "summary"}) when --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.generate_ingest import AS_OF, homefeed_command
from benchmarks.measure import benchmark_workdir
from benchmarks.suite_run import REPO, failed_record, python_module, run_benchmark
from benchmarks.suite_summary import combined_document, summary_rows, summary_table

DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "latest.json"
RANKERS = ("heavy_ranker", "light_ranker")

DEFAULT_GROUPS = ("generate_ingest", "graph_jobs", "ranking_inference", "ranking_batch", "publish", "serve")
EXTRA_GROUPS = ("generate_world", "twhin", "ranking_training", "quality", "soak")
KNOWN_GROUPS = (*DEFAULT_GROUPS, "train_rankers", *EXTRA_GROUPS)


# --- the steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str  # the key in the document's "benchmarks"
    group: str  # what --only selects
    run: Callable[[], dict]  # returns the step's record
    requires: tuple[str, ...] = ()  # steps whose failure in the same run makes this one pointless


def world_dir(workdir: Path, users: int) -> Path:
    """Where generate_ingest and graph_jobs keep a size's world (their `--workdir` layout)."""
    return workdir / f"world-{users}"


def holds_promoted_rankers(warehouse: Path) -> bool:
    return all((warehouse / "models" / name / "CURRENT").is_file() for name in RANKERS)


def train_rankers(world: Path, models_home: Path, users: int) -> dict:
    """The training set and both rankers on `world`'s warehouse (with mutual_follows, the one graph
    table the training set reads, so that an ingested world is enough), then its models copied to
    `models_home/models`, kept apart because ranking_batch replaces each warehouse's models."""
    report = world / "report-training.json"
    command = homefeed_command(
        "run",
        "--input",
        str(world / "raw"),
        "--warehouse",
        str(world / "warehouse"),
        "--select",
        "group:training or key:mutual_follows",
        "--report",
        str(report),
    )

    def read_report(_stdout: str) -> dict:
        outcome = json.loads(report.read_text())
        return {
            "benchmark": "train_rankers",
            "users": users,
            "step_seconds": outcome["step_seconds"],
            "rows": outcome["rows"],
        }

    record = run_benchmark(command, users=users, env={"HOMEFEED_AS_OF": AS_OF}, read_result=read_report)
    if record["status"] == "ok":
        shutil.rmtree(models_home / "models", ignore_errors=True)
        shutil.copytree(world / "warehouse" / "models", models_home / "models")
    return record


class PublishedRedis:
    """A redis-server of the suite's own holding one publication of `tables_dir`, started and
    published on first use; a failure to do so is kept and raised again to every later user."""

    def __init__(self, workdir: Path, tables_dir: Path) -> None:
        self.workdir, self.tables_dir = workdir, tables_dir
        self.server = None
        self.error: Exception | None = None

    def url(self) -> str:
        if self.error is not None:
            raise self.error
        if self.server is None:
            from core.redis_server import start_redis
            from orchestration.publication import publish_to_redis

            try:
                self.server = start_redis(self.workdir)
                publish_to_redis(self.server.url, self.tables_dir)
            except Exception as error:
                self.error = error
                raise
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def against_published_redis(published: PublishedRedis, module: str, *args: object, users: int) -> dict:
    try:
        url = published.url()
    except Exception as error:
        command = python_module(module, "--json", "--redis", "<suite redis>", *args)
        return failed_record(
            command,
            0.0,
            None,
            f"publishing {published.tables_dir} to a local Redis failed: {type(error).__name__}: {error}",
        )
    return run_benchmark(python_module(module, "--json", "--redis", url, *args), users=users)


def plan_steps(
    sizes: list[int], workdir: Path, *, models_from: Path | None, published: PublishedRedis, resume: bool = False
) -> list[Step]:
    """Every step the suite knows, in dependency order; with `resume`, graph_jobs keeps the jobs an
    interrupted run of it measured on the same worlds."""
    worlds = {n: world_dir(workdir, n) for n in sizes}
    return [
        *world_steps(sizes, workdir, worlds, resume=resume),
        *ranking_steps(sizes, worlds, models_from=models_from, models_home=models_from or workdir / "rankers"),
        *publish_steps(sizes, worlds),
        *quality_and_serving_steps(sizes, worlds, published),
    ]


def world_steps(sizes: list[int], workdir: Path, worlds: dict[int, Path], *, resume: bool) -> list[Step]:
    """Generating worlds (alone, and generated and ingested into `workdir`), the graph jobs on them
    and TwHIN."""
    graph_jobs = python_module(
        "graph_jobs", "--sizes", *sizes, "--workdir", workdir, "--reuse-worlds", *(["--resume"] if resume else [])
    )
    return [
        Step("generate_world", "generate_world", lambda: run_benchmark(python_module("bench_generate", *sizes))),
        Step(
            "generate_ingest",
            "generate_ingest",
            lambda: run_benchmark(python_module("generate_ingest", "--sizes", *sizes, "--workdir", workdir)),
        ),
        Step("graph_jobs", "graph_jobs", lambda: run_benchmark(graph_jobs)),
        Step("twhin", "twhin", lambda: run_benchmark(python_module("bench_twhin", "--worlds", *worlds.values()))),
    ]


def ranking_steps(
    sizes: list[int], worlds: dict[int, Path], *, models_from: Path | None, models_home: Path
) -> list[Step]:
    """The rankers' inference and training benchmarks; training rankers on the smallest world when
    there are none to copy (`models_from`); ranked_feeds on each size with the rankers of `models_home`."""
    smallest = sizes[0]
    steps = [
        Step("ranking_inference", "ranking_inference", lambda: run_benchmark(python_module("ranking", "inference"))),
        Step("ranking_training", "ranking_training", lambda: run_benchmark(python_module("ranking", "training"))),
    ]
    if models_from is None:
        steps.append(
            Step(
                "train_rankers",
                "train_rankers",
                requires=("generate_ingest",),
                run=lambda: train_rankers(worlds[smallest], models_home, smallest),
            )
        )
    for n in sizes:
        steps.append(
            Step(
                f"ranking_batch@{n}",
                "ranking_batch",
                requires=("graph_jobs", "train_rankers"),
                run=lambda n=n: run_benchmark(
                    python_module(
                        "ranking", "batch", "--warehouse", worlds[n] / "warehouse", "--models-from", models_home
                    ),
                    users=n,
                ),
            )
        )
    return steps


def publish_steps(sizes: list[int], worlds: dict[int, Path]) -> list[Step]:
    """Each size's publication of its ranked feeds."""
    return [
        Step(
            f"publish@{n}",
            "publish",
            requires=(f"ranking_batch@{n}",),
            run=lambda n=n: run_benchmark(python_module("publish", "--warehouse", worlds[n] / "warehouse"), users=n),
        )
        for n in sizes
    ]


def quality_and_serving_steps(sizes: list[int], worlds: dict[int, Path], published: PublishedRedis) -> list[Step]:
    """The data quality checks on the smallest world; the API benchmark and the soak against the
    largest size's publication."""
    smallest, largest = sizes[0], sizes[-1]
    return [
        Step(
            "quality",
            "quality",
            requires=("graph_jobs",),
            run=lambda: run_benchmark(
                python_module("quality", "--warehouse", worlds[smallest] / "warehouse"), users=smallest
            ),
        ),
        Step(
            "serve",
            "serve",
            requires=(f"ranking_batch@{largest}",),
            run=lambda: against_published_redis(published, "serve", users=largest),
        ),
        Step(
            "soak",
            "soak",
            requires=(f"ranking_batch@{largest}",),
            run=lambda: against_published_redis(published, "soak", users=largest),
        ),
    ]


def select_steps(steps: list[Step], only: Iterable[str] | None, *, models_available: bool) -> list[Step]:
    """The default groups, or those named in `only` (groups or step names); train_rankers goes along
    with ranking_batch when there are no rankers to copy."""
    wanted = set(only or DEFAULT_GROUPS)
    if not models_available and any(name.split("@")[0] == "ranking_batch" for name in wanted):
        wanted.add("train_rankers")
    return [step for step in steps if step.group in wanted or step.name in wanted]


def skipped_because(step: Step, records: dict[str, dict]) -> str | None:
    failed = [name for name in step.requires if name in records and records[name]["status"] != "ok"]
    return f"needs {', '.join(failed)}, which did not succeed" if failed else None


def kept_records(previous: dict | None, steps: list[Step], sizes: list[int]) -> dict[str, dict]:
    """The records of a previous run's document (`--resume`) that this run keeps instead of
    measuring again: the steps planned now that succeeded then, each marked with the run it came
    from. A document of other sizes keeps nothing (its worlds are not these)."""
    if not previous or previous.get("sizes") != sizes:
        return {}
    origin = {"started_at": previous.get("started_at"), "git_commit": previous.get("git_commit")}
    planned = {step.name for step in steps}
    return {
        name: {**record, "kept_from": record.get("kept_from", origin)}
        for name, record in previous.get("benchmarks", {}).items()
        if name in planned and record.get("status") == "ok"
    }


def run_steps(
    steps: list[Step], document: dict, *, write: Callable[[dict], None], kept: dict[str, dict] | None = None
) -> dict:
    """Run each step in order (unless one it requires failed, or `kept` holds its record from a
    previous run), recording it with the time it finished and rewriting the document after each;
    returns the document."""
    records, kept = document["benchmarks"], kept or {}
    for index, step in enumerate(steps, 1):
        if step.name in kept:
            records[step.name] = kept[step.name]
            print(
                f"== [{index}/{len(steps)}] {step.name}: kept from the run started at "
                f"{kept[step.name]['kept_from']['started_at']}",
                file=sys.stderr,
                flush=True,
            )
        else:
            reason = skipped_because(step, records)
            print(
                f"== [{index}/{len(steps)}] {step.name}" + (f": skipped, {reason}" if reason else ""),
                file=sys.stderr,
                flush=True,
            )
            records[step.name] = {"status": "skipped", "reason": reason} if reason else step.run()
            records[step.name]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            if records[step.name]["status"] == "failed":
                print(f"== {step.name} failed (exit {records[step.name]['returncode']})", file=sys.stderr, flush=True)
        document["summary"] = summary_rows(records)
        write(document)
    return document


def exit_status(document: dict) -> int:
    """0 when every benchmark succeeded, else 1."""
    return 0 if all(record["status"] == "ok" for record in document["benchmarks"].values()) else 1


# --- the document ------------------------------------------------------------------------------------


def machine() -> dict:
    memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_bytes / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the working tree differs from it), or Nones outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return None, None


def new_document(sizes: list[int], command: str) -> dict:
    commit, dirty = git_state()
    return {
        "suite": "homefeed",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": command,
        "sizes": sizes,
        "benchmarks": {},
        "summary": [],
    }


def write_document(document: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(out)


# --- main --------------------------------------------------------------------------------------------


def run_suite(
    sizes: list[int],
    *,
    workdir: Path | None,
    only: list[str] | None,
    models_from: Path | None,
    out: Path,
    command: str,
    resume: bool = False,
    previous: dict | None = None,
) -> dict:
    """Run the selected steps. With `resume`, the steps `previous` (the document of an interrupted
    or partial run on the same --workdir, if any) records as succeeded are kept, not run again, and
    graph_jobs keeps the jobs it measured before it was interrupted."""
    document = new_document(sizes, command)
    with ExitStack() as stack:
        work = stack.enter_context(benchmark_workdir(workdir, keep=False, prefix="homefeed-suite-"))
        published = PublishedRedis(work / "redis", world_dir(work, sizes[-1]) / "warehouse" / "tables")
        stack.callback(published.stop)
        models_available = holds_promoted_rankers(models_from or work / "rankers")
        steps = select_steps(
            plan_steps(sizes, work, models_from=models_from, published=published, resume=resume),
            only,
            models_available=models_available,
        )
        print(f"== {len(steps)} benchmarks in {work}: {', '.join(s.name for s in steps)}", file=sys.stderr, flush=True)
        run_steps(steps, document, write=lambda d: write_document(d, out), kept=kept_records(previous, steps, sizes))
    write_document(document, out)
    return document


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = KNOWN_GROUPS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="users per world")
    parser.add_argument("--workdir", type=Path, help="keep the worlds here (and reuse what a previous run left)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"run only these groups or steps (groups: {', '.join(known)})"
    )
    parser.add_argument(
        "--models-from",
        type=Path,
        help="a warehouse whose promoted rankers ranking_batch uses (e.g. `warehouse` after "
        "`make demo`); default: train them on the smallest world",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the JSON document (default: benchmarks/results/latest.json; with --combine, written only when given)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the steps that --out already records as succeeded (a run interrupted or "
        "split over several sittings, with the same --sizes and --workdir) and run the rest",
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="DOCUMENT",
        help="run nothing: print one table, scaling factors across them, from the documents of runs at different sizes",
    )
    args = parser.parse_args(argv)
    if args.combine:
        try:
            document = combined_document([json.loads(path.read_text()) for path in args.combine])
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--combine: {error!r}")
        if args.out is not None:
            write_document(document, args.out)
        print(summary_table(document))
        return exit_status(document)
    args.out = args.out or DEFAULT_OUT
    sizes = sorted(set(args.sizes))
    if sizes[0] < 1:
        parser.error("--sizes are positive user counts")
    unknown = [name for name in args.only or () if name.split("@")[0] not in known]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(known)}")
    if args.models_from is not None and not holds_promoted_rankers(args.models_from):
        parser.error(f"{args.models_from}/models has no promoted {' and '.join(RANKERS)}")
    previous = None
    if args.resume:
        if args.workdir is None:
            parser.error("--resume needs the --workdir whose worlds the previous run built")
        previous = json.loads(args.out.read_text()) if args.out.exists() else None
        if previous is not None and previous.get("sizes") != sizes:
            parser.error(f"--resume: {args.out} measured sizes {previous.get('sizes')}, not {sizes}")
    command = shlex.join(["python", "-m", "benchmarks.suite", *argv])
    document = run_suite(
        sizes,
        workdir=args.workdir,
        only=args.only,
        models_from=args.models_from,
        out=args.out,
        command=command,
        resume=args.resume,
        previous=previous,
    )
    print(summary_table(document))
    print(f"JSON: {args.out}", file=sys.stderr)
    return exit_status(document)


if __name__ == "__main__":
    sys.exit(main())
