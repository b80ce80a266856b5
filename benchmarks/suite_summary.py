"""The suite's summary: one row per stage and size from the benchmarks' JSON records, each stage's
scaling factor from one size to the next, the markdown table the README's latest-bench block shows,
and one document from runs at different sizes (`python -m benchmarks.suite --combine`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

# graph_jobs' jobs summed into one row each; every other job of it is a graph job.
CANDIDATE_JOBS = ("candidates",)
FEATURE_JOBS = ("user_features", "author_features", "tweet_features", "user_author_features", "user_tweet_features")


def stage_row(stage: str, users: int | None, wall_seconds: float | None, peak_rss_mb: float | None) -> dict:
    return {"kind": "stage", "stage": stage, "users": users, "wall_seconds": wall_seconds, "peak_rss_mb": peak_rss_mb}


def _generate_ingest_rows(record: dict) -> Iterator[dict]:
    for size in record["result"]["sizes"]:
        for stage in ("generate", "ingest"):
            yield stage_row(stage, size["users"], size[stage]["seconds"], size[stage]["peak_rss_mb"])


def _generate_world_rows(record: dict) -> Iterator[dict]:
    for size in record["result"]["results"]:
        yield stage_row("generate (generator alone)", size["users"], size["wall_seconds"], size["peak_rss_mb"])


def _graph_jobs_rows(record: dict) -> Iterator[dict]:
    """Per size, the jobs summed into graph jobs, candidates and feature tables: the processes' wall
    seconds added up, the largest of their peaks."""
    for size in record["result"]["sizes"]:
        groups: dict[str, list[dict]] = {}
        for job, figures in size["jobs"].items():
            stage = "candidates" if job in CANDIDATE_JOBS else "feature tables" if job in FEATURE_JOBS else "graph jobs"
            groups.setdefault(stage, []).append(figures)
        for stage in ("graph jobs", "candidates", "feature tables"):
            if stage in groups:
                jobs = groups[stage]
                label = f"{stage} ({len(jobs)})" if stage != "candidates" else stage
                yield stage_row(
                    label,
                    size["users"],
                    round(sum(j["process_seconds"] for j in jobs), 2),
                    max(j["peak_rss_mb"] for j in jobs),
                )


def _train_rankers_rows(record: dict) -> Iterator[dict]:
    yield stage_row("train rankers (training set + rankers)", record["users"], record["seconds"], record["peak_rss_mb"])


def _ranking_batch_rows(record: dict) -> Iterator[dict]:
    for run in record["result"]["results"]:
        yield stage_row("ranked_feeds", record["users"], run["process_seconds"], run["peak_rss_mb"])


def _publish_rows(record: dict) -> Iterator[dict]:
    """The whole publication's seconds; the peak is the suite's sample of publish.py's process tree."""
    for run in record["result"]["results"]:
        yield stage_row("publish", record["users"], run["warehouse"]["publish_seconds"], record["peak_rss_mb"])
        for dataset in ("feeds", "warehouse"):
            figures = run[dataset]
            yield {
                "kind": "publication",
                "users": record["users"],
                "dataset": dataset,
                "publish_mb_per_second": round(figures["publish_bytes_per_second"] / 1e6, 1),
                "redis_benchmark_mb_per_second": round(figures["redis_benchmark_bytes_per_second"] / 1e6, 1),
                "ratio": figures["publish_vs_redis_benchmark"],
            }


def _serve_rows(record: dict) -> Iterator[dict]:
    result = record["result"]
    for endpoint in ("for_you", "for_you_computed", "following", "following_computed"):
        if endpoint not in result:  # a document from before the *_computed runs
            continue
        figures = result[endpoint]
        yield {
            "kind": "serving",
            "endpoint": endpoint,
            "users": record.get("users"),
            "connections": result["headline_connections"],
            "rps": figures["rps"],
            "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"],
            "baseline_rps": result["baseline_rps"],
            "ratio_to_baseline": figures["ratio_to_baseline"],
        }


def _inference_rows(record: dict) -> Iterator[dict]:
    for run in record["result"]["results"]:
        yield {
            "kind": "heavy_ranker",
            "threads": run["threads"],
            "candidates_per_second": run["candidates_per_second_network"],
            "achieved_gflops": run["achieved_gflops"],
            "matmul_peak_gflops": run["matmul_peak_gflops"],
            "efficiency": run["efficiency_vs_matmul_peak"],
        }


def _twhin_rows(record: dict) -> Iterator[dict]:
    for run in record["result"]["results"]:
        yield stage_row("twhin training (bench_twhin)", run["users"], run["wall_seconds"], run["peak_rss_mb"])


# Keyed by the "benchmark" field of each benchmark's own JSON; the others stay in the JSON only.
ROW_EXTRACTORS: dict[str, Callable[[dict], Iterator[dict]]] = {
    "generate_ingest": _generate_ingest_rows,
    "generate_world": _generate_world_rows,
    "graph_jobs": _graph_jobs_rows,
    "twhin": _twhin_rows,
    "train_rankers": _train_rankers_rows,
    "ranked_feeds_batch": _ranking_batch_rows,
    "publish": _publish_rows,
    "serve": _serve_rows,
    "heavy_ranker_inference": _inference_rows,
}

STAGE_ORDER = (
    "generate",
    "ingest",
    "generate (generator alone)",
    "graph jobs",
    "candidates",
    "feature tables",
    "twhin training",
    "train rankers",
    "ranked_feeds",
    "publish",
)


def _stage_rank(stage: str) -> int:
    """The position in STAGE_ORDER of the longest name `stage` starts with (labels may add a count)."""
    matches = [prefix for prefix in STAGE_ORDER if stage.startswith(prefix)]
    return STAGE_ORDER.index(max(matches, key=len)) if matches else len(STAGE_ORDER)


def with_scaling_factors(stages: list[dict]) -> list[dict]:
    """Stage rows in stage then size order, each with the scaling factor from the next smaller size
    of the same stage: (time ratio) / (user ratio), so 1.0 is linear and below 1 sublinear."""
    ordered = sorted(stages, key=lambda row: (_stage_rank(row["stage"]), row["stage"], row["users"] or 0))
    out = []
    for row in ordered:
        previous = out[-1] if out and out[-1]["stage"] == row["stage"] else None
        factor = None
        measured = previous and previous["wall_seconds"] and row["wall_seconds"] is not None
        if measured and previous["users"] and row["users"]:
            factor = round(row["wall_seconds"] / previous["wall_seconds"] / (row["users"] / previous["users"]), 3)
        out.append({**row, "scaling_factor": factor})
    return out


def summary_rows(benchmarks: dict[str, dict]) -> list[dict]:
    """The table's rows from the benchmarks' records: stages (per size, with scaling factors), then
    serving, publication and heavy ranker figures, then one row per benchmark that did not succeed."""
    stages, figures, not_ok = [], [], []
    for name, record in benchmarks.items():
        if record["status"] != "ok":
            not_ok.append(
                {
                    "kind": record["status"],
                    "benchmark": name,
                    "detail": record.get("reason") or f"exit status {record.get('returncode')}",
                }
            )
            continue
        for row in ROW_EXTRACTORS.get(record["result"].get("benchmark"), lambda _: iter(()))(record):
            (stages if row["kind"] == "stage" else figures).append(row)
    figure_order = {"serving": 0, "publication": 1, "heavy_ranker": 2}
    figures.sort(key=lambda row: figure_order[row["kind"]])  # stable: each benchmark's own order within a kind
    return [*with_scaling_factors(stages), *figures, *not_ok]


# --- the markdown table ------------------------------------------------------------------------------


def _number(value: float | None, decimals: int = 0) -> str:
    return "" if value is None else f"{value:,.{decimals}f}"


def _figure_cells(row: dict) -> tuple[str, str, str, str]:
    """(what, measured, against, ratio) of a figure row."""
    if row["kind"] == "serving":
        users = f"{_number(row['users'])} users, " if row.get("users") else ""
        return (
            f"serving {row['endpoint']}, {users}{row['connections']} connections",
            f"{_number(row['rps'])} rps, p50 {_number(row['p50_ms'], 1)} ms, p99 {_number(row['p99_ms'], 1)} ms",
            f"baseline {_number(row['baseline_rps'])} rps",
            _number(row["ratio_to_baseline"], 2),
        )
    if row["kind"] == "publication":
        return (
            f"publication of the {row['dataset']}, {_number(row['users'])} users",
            f"{_number(row['publish_mb_per_second'], 1)} MB/s",
            f"redis-benchmark {_number(row['redis_benchmark_mb_per_second'], 1)} MB/s",
            _number(row["ratio"], 3),
        )
    threads = f"{row['threads']} thread" + ("s" if row["threads"] != 1 else "")
    return (
        f"heavy ranker inference, {threads}",
        f"{_number(row['candidates_per_second'])} candidates/s, {_number(row['achieved_gflops'], 1)} GFLOP/s",
        f"matmul peak {_number(row['matmul_peak_gflops'], 1)} GFLOP/s",
        _number(row["efficiency"], 2),
    )


def _run_line(run: dict) -> str:
    machine_info = run["machine"]
    commit = (run.get("git_commit") or "unknown")[:10] + (" (modified)" if run.get("git_dirty") else "")
    return (
        f"`{run['command']}`, {run['started_at']}, commit {commit}, "
        f"{machine_info['cpus']} CPUs, {machine_info['memory_gb']} GB"
    )


def summary_table(document: dict) -> str:
    """Markdown: a line naming the run (a line per run of a combined document), the stages table,
    the figures table, what did not succeed."""
    lines = [*(_run_line(run) for run in document.get("runs", [document])), ""]
    rows = document["summary"]
    stages = [row for row in rows if row["kind"] == "stage"]
    if stages:
        lines += ["| stage | users | wall s | peak MB | scaling |", "|---|---:|---:|---:|---:|"]
        lines += [
            f"| {r['stage']} | {_number(r['users'])} | {_number(r['wall_seconds'], 1)} | "
            f"{_number(r['peak_rss_mb'])} | {_number(r['scaling_factor'], 2)} |"
            for r in stages
        ]
        lines.append("")
    figures = [row for row in rows if row["kind"] in ("serving", "publication", "heavy_ranker")]
    if figures:
        lines += ["| figure | measured | against | ratio |", "|---|---|---|---:|"]
        lines += ["| " + " | ".join(_figure_cells(row)) + " |" for row in figures]
        lines.append("")
    not_ok = [
        f"{row['benchmark']} ({row['kind']}: {row['detail']})" for row in rows if row["kind"] in ("failed", "skipped")
    ]
    if not_ok:
        lines += ["Did not succeed: " + "; ".join(not_ok) + ".", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


RUN_KEYS = ("command", "started_at", "git_commit", "git_dirty", "machine", "sizes")


def combined_document(documents: list[dict]) -> dict:
    """One document from suite runs at different sizes (a size a sitting, when the whole run takes
    longer): the runs under "runs", their benchmarks side by side (each name followed by its run's
    sizes) and one summary, so that a stage's scaling factor goes from one run's size to the next."""
    seen: set[int] = set()
    for document in documents:
        overlap = seen & set(document["sizes"])
        if overlap:
            raise ValueError(f"two documents measured {sorted(overlap)} users; combine runs of different sizes")
        seen |= set(document["sizes"])
    benchmarks = {
        f"{name} ({'+'.join(map(str, document['sizes']))})": record
        for document in documents
        for name, record in document["benchmarks"].items()
    }
    return {
        "suite": "homefeed",
        "runs": [{key: document.get(key) for key in RUN_KEYS} for document in documents],
        "sizes": sorted(seen),
        "benchmarks": benchmarks,
        "summary": summary_rows(benchmarks),
    }
