"""benchmarks/suite.py: the summary rows and the markdown table from hand-written benchmark JSON
(expected figures worked out by hand), a failing benchmark recorded while the others go on, and
one small run of the suite as a command (the generator alone at 300 and 600 users)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.graph_jobs import holds_ingested_world
from benchmarks.suite import (
    Step,
    exit_status,
    kept_records,
    main,
    run_steps,
    select_steps,
)
from benchmarks.suite_run import parse_benchmark_output, run_benchmark
from benchmarks.suite_summary import combined_document, summary_rows, summary_table

REPO_ROOT = Path(__file__).resolve().parents[1]


def ok(result: dict, *, users: int | None = None, peak_rss_mb: float = 1.0) -> dict:
    record = {
        "status": "ok",
        "command": "python -m benchmarks.x",
        "seconds": 1.0,
        "peak_rss_mb": peak_rss_mb,
        "result": result,
    }
    return record if users is None else {**record, "users": users}


def graph_size(users: int, jobs: dict[str, tuple[float, float]]) -> dict:
    return {
        "users": users,
        "jobs": {
            job: {"process_seconds": seconds, "job_seconds": seconds - 5, "peak_rss_mb": peak, "rows": 10}
            for job, (seconds, peak) in jobs.items()
        },
    }


def publish_result(warehouse_seconds: float, feeds: tuple[int, int, float], warehouse: tuple[int, int, float]) -> dict:
    def run(publish_bps: int, benchmark_bps: int, ratio: float, seconds: float) -> dict:
        return {
            "publish_seconds": seconds,
            "publish_bytes_per_second": publish_bps,
            "redis_benchmark_bytes_per_second": benchmark_bps,
            "publish_vs_redis_benchmark": ratio,
        }

    figures = {"feeds": run(*feeds, 1.0), "warehouse": run(*warehouse, warehouse_seconds)}
    return {"benchmark": "publish", "results": [{"warehouse": "/w", "users": 1, "pipeline": 500, **figures}]}


BENCHMARKS = {
    "generate_ingest": ok(
        {
            "benchmark": "generate_ingest",
            "sizes": [
                {
                    "users": 1000,
                    "generate": {"seconds": 2.0, "peak_rss_mb": 100.0},
                    "ingest": {"seconds": 50.0, "peak_rss_mb": 3000.0, "steps_seconds": {}},
                    "rows": {},
                },
                {
                    "users": 10000,
                    "generate": {"seconds": 10.0, "peak_rss_mb": 400.0},
                    "ingest": {"seconds": 100.0, "peak_rss_mb": 4000.0, "steps_seconds": {}},
                    "rows": {},
                },
            ],
            "scaling": [],
        }
    ),
    "graph_jobs": ok(
        {
            "benchmark": "graph_jobs",
            "growth": [],
            "sizes": [
                graph_size(
                    1000,
                    {
                        "follow_graph_two_hop": (30.0, 2000.0),
                        "realgraph": (40.0, 2500.0),
                        "candidates": (60.0, 3000.0),
                        "user_features": (20.0, 1500.0),
                        "tweet_features": (25.0, 1800.0),
                    },
                ),
                graph_size(
                    10000,
                    {
                        "follow_graph_two_hop": (300.0, 5000.0),
                        "realgraph": (400.0, 4000.0),
                        "candidates": (1200.0, 9000.0),
                        "user_features": (100.0, 2000.0),
                        "tweet_features": (350.0, 2600.0),
                    },
                ),
            ],
        }
    ),
    "ranking_inference": ok(
        {
            "benchmark": "heavy_ranker_inference",
            "rows": 1000,
            "torch": "x",
            "results": [
                {
                    "threads": 1,
                    "candidates_per_second_network": 274000,
                    "candidates_per_second_end_to_end": 100000,
                    "multiply_adds_per_candidate": 134208,
                    "achieved_gflops": 73.0,
                    "matmul_peak_gflops": 84.0,
                    "efficiency_vs_matmul_peak": 0.869,
                }
            ],
        }
    ),
    "ranking_batch@1000": ok(
        {
            "benchmark": "ranked_feeds_batch",
            "results": [
                {
                    "warehouse": "/w1",
                    "process_seconds": 80.0,
                    "job_seconds": 70.0,
                    "quality_check_seconds": 5.0,
                    "peak_rss_mb": 6000.0,
                    "rows": 200000,
                }
            ],
        },
        users=1000,
    ),
    "ranking_batch@10000": ok(
        {
            "benchmark": "ranked_feeds_batch",
            "results": [
                {
                    "warehouse": "/w2",
                    "process_seconds": 400.0,
                    "job_seconds": 380.0,
                    "quality_check_seconds": 9.0,
                    "peak_rss_mb": 7000.0,
                    "rows": 2000000,
                }
            ],
        },
        users=10000,
    ),
    "publish@1000": ok(
        publish_result(4.0, (30_000_000, 600_000_000, 0.05), (25_000_000, 500_000_000, 0.05)),
        users=1000,
        peak_rss_mb=900.0,
    ),
    "publish@10000": ok(
        publish_result(20.0, (40_000_000, 700_000_000, 0.057), (35_000_000, 700_000_000, 0.05)),
        users=10000,
        peak_rss_mb=1500.0,
    ),
    "quality": {
        "status": "failed",
        "command": "python -m benchmarks.quality",
        "seconds": 3.0,
        "returncode": 2,
        "stderr_tail": "Traceback ...",
    },
    "serve": ok(
        {
            "benchmark": "serve",
            "headline_connections": 50,
            "baseline_rps": 2000.0,
            "for_you": {"rps": 1200.0, "p50_ms": 30.0, "p99_ms": 80.0, "ratio_to_baseline": 0.6, "errors": 0},
            "following": {"rps": 1500.0, "p50_ms": 25.0, "p99_ms": 60.0, "ratio_to_baseline": 0.75, "errors": 0},
        },
        users=10000,
    ),
    "soak": {"status": "skipped", "reason": "needs ranking_batch@10000, which did not succeed"},
    "ranking_training": ok({"benchmark": "ranker_training", "heavy_ranker_seconds": 100.0}),  # JSON only
}


def stage(name: str, users: int, seconds: float, peak: float, factor: float | None) -> dict:
    return {
        "kind": "stage",
        "stage": name,
        "users": users,
        "wall_seconds": seconds,
        "peak_rss_mb": peak,
        "scaling_factor": factor,
    }


def publication(users: int, dataset: str, publish: float, benchmark: float, ratio: float) -> dict:
    return {
        "kind": "publication",
        "users": users,
        "dataset": dataset,
        "publish_mb_per_second": publish,
        "redis_benchmark_mb_per_second": benchmark,
        "ratio": ratio,
    }


def test_summary_rows_give_each_stage_per_size_with_its_scaling_then_the_figures():
    assert summary_rows(BENCHMARKS) == [
        # scaling = (time ratio) / (user ratio 10): generate 10/2/10, ingest 100/50/10, ...
        stage("generate", 1000, 2.0, 100.0, None),
        stage("generate", 10000, 10.0, 400.0, 0.5),
        stage("ingest", 1000, 50.0, 3000.0, None),
        stage("ingest", 10000, 100.0, 4000.0, 0.2),
        # graph jobs: two-hop + realgraph = 30 + 40 s, the larger peak; at 10K 300 + 400 = 700 s
        stage("graph jobs (2)", 1000, 70.0, 2500.0, None),
        stage("graph jobs (2)", 10000, 700.0, 5000.0, 1.0),
        stage("candidates", 1000, 60.0, 3000.0, None),
        stage("candidates", 10000, 1200.0, 9000.0, 2.0),
        stage("feature tables (2)", 1000, 45.0, 1800.0, None),
        stage("feature tables (2)", 10000, 450.0, 2600.0, 1.0),
        stage("ranked_feeds", 1000, 80.0, 6000.0, None),
        stage("ranked_feeds", 10000, 400.0, 7000.0, 0.5),
        # publish: the whole warehouse's seconds, the suite's peak of the command
        stage("publish", 1000, 4.0, 900.0, None),
        stage("publish", 10000, 20.0, 1500.0, 0.5),
        {
            "kind": "serving",
            "endpoint": "for_you",
            "users": 10000,
            "connections": 50,
            "rps": 1200.0,
            "p50_ms": 30.0,
            "p99_ms": 80.0,
            "baseline_rps": 2000.0,
            "ratio_to_baseline": 0.6,
        },
        {
            "kind": "serving",
            "endpoint": "following",
            "users": 10000,
            "connections": 50,
            "rps": 1500.0,
            "p50_ms": 25.0,
            "p99_ms": 60.0,
            "baseline_rps": 2000.0,
            "ratio_to_baseline": 0.75,
        },
        publication(1000, "feeds", 30.0, 600.0, 0.05),
        publication(1000, "warehouse", 25.0, 500.0, 0.05),
        publication(10000, "feeds", 40.0, 700.0, 0.057),
        publication(10000, "warehouse", 35.0, 700.0, 0.05),
        {
            "kind": "heavy_ranker",
            "threads": 1,
            "candidates_per_second": 274000,
            "achieved_gflops": 73.0,
            "matmul_peak_gflops": 84.0,
            "efficiency": 0.869,
        },
        {"kind": "failed", "benchmark": "quality", "detail": "exit status 2"},
        {"kind": "skipped", "benchmark": "soak", "detail": "needs ranking_batch@10000, which did not succeed"},
    ]


def test_a_stage_measured_at_one_size_has_no_scaling_factor():
    rows = summary_rows(
        {
            "generate_world": ok(
                {
                    "benchmark": "generate_world",
                    "results": [{"users": 500, "seconds": 1.0, "wall_seconds": 3.0, "peak_rss_mb": 150.0}],
                }
            )
        }
    )
    assert rows == [stage("generate (generator alone)", 500, 3.0, 150.0, None)]


def test_summary_table_is_markdown_of_the_rows():
    document = {
        "command": "python -m benchmarks.suite --sizes 1000 10000",
        "started_at": "2026-12-01T10:00:00+00:00",
        "git_commit": "0123456789abcdef",
        "git_dirty": False,
        "machine": {"cpus": 2, "memory_gb": 23.5},
        "summary": [
            stage("ingest", 1000, 50.0, 3000.0, None),
            stage("ingest", 10000, 100.26, 4000.4, 0.2),
            {
                "kind": "serving",
                "endpoint": "for_you",
                "users": 10000,
                "connections": 50,
                "rps": 1234.56,
                "p50_ms": 3.14,
                "p99_ms": 20.0,
                "baseline_rps": 2000.0,
                "ratio_to_baseline": 0.617,
            },
            publication(10000, "feeds", 38.0, 732.0, 0.052),
            {
                "kind": "heavy_ranker",
                "threads": 2,
                "candidates_per_second": 274000,
                "achieved_gflops": 73.04,
                "matmul_peak_gflops": 84.0,
                "efficiency": 0.869,
            },
            {"kind": "failed", "benchmark": "quality", "detail": "exit status 2"},
        ],
    }
    assert summary_table(document) == (
        "`python -m benchmarks.suite --sizes 1000 10000`, 2026-12-01T10:00:00+00:00, commit 0123456789, "
        "2 CPUs, 23.5 GB\n"
        "\n"
        "| stage | users | wall s | peak MB | scaling |\n"
        "|---|---:|---:|---:|---:|\n"
        "| ingest | 1,000 | 50.0 | 3,000 |  |\n"
        "| ingest | 10,000 | 100.3 | 4,000 | 0.20 |\n"
        "\n"
        "| figure | measured | against | ratio |\n"
        "|---|---|---|---:|\n"
        "| serving for_you, 10,000 users, 50 connections | 1,235 rps, p50 3.1 ms, p99 20.0 ms | baseline 2,000 rps | 0.62 |\n"
        "| publication of the feeds, 10,000 users | 38.0 MB/s | redis-benchmark 732.0 MB/s | 0.052 |\n"
        "| heavy ranker inference, 2 threads | 274,000 candidates/s, 73.0 GFLOP/s | matmul peak 84.0 GFLOP/s | 0.87 |\n"
        "\n"
        "Did not succeed: quality (failed: exit status 2).\n"
    )


def run_document(sizes: list[int], benchmarks: dict, started_at: str) -> dict:
    return {
        "suite": "homefeed",
        "command": f"python -m benchmarks.suite --sizes {sizes[0]}",
        "started_at": started_at,
        "git_commit": "0123456789abcdef",
        "git_dirty": False,
        "machine": {"cpus": 2, "memory_gb": 23.5},
        "sizes": sizes,
        "benchmarks": benchmarks,
    }


def one_size(users: int) -> dict:
    """BENCHMARKS' records at one size, as a run of the suite at that size alone writes them."""
    generate_ingest = BENCHMARKS["generate_ingest"]["result"]
    graph_jobs = BENCHMARKS["graph_jobs"]["result"]
    return {
        "generate_ingest": ok(
            {**generate_ingest, "sizes": [s for s in generate_ingest["sizes"] if s["users"] == users]}
        ),
        "graph_jobs": ok({**graph_jobs, "sizes": [s for s in graph_jobs["sizes"] if s["users"] == users]}),
        f"ranking_batch@{users}": BENCHMARKS[f"ranking_batch@{users}"],
        f"publish@{users}": BENCHMARKS[f"publish@{users}"],
    }


def test_runs_at_different_sizes_combine_into_one_table_scaling_across_them(tmp_path, capsys):
    small, large = run_document([1000], one_size(1000), "t1"), run_document([10000], one_size(10000), "t2")
    combined = combined_document([small, large])
    assert combined["sizes"] == [1000, 10000]
    assert [run["started_at"] for run in combined["runs"]] == ["t1", "t2"]
    assert set(combined["benchmarks"]) == {
        "generate_ingest (1000)",
        "graph_jobs (1000)",
        "ranking_batch@1000 (1000)",
        "publish@1000 (1000)",
        "generate_ingest (10000)",
        "graph_jobs (10000)",
        "ranking_batch@10000 (10000)",
        "publish@10000 (10000)",
    }
    stages = [row for row in combined["summary"] if row["kind"] == "stage"]
    # The same factors as one run at both sizes (test above): generate 10/2/10, candidates 1200/60/10, ...
    assert [(row["stage"], row["users"], row["scaling_factor"]) for row in stages] == [
        ("generate", 1000, None),
        ("generate", 10000, 0.5),
        ("ingest", 1000, None),
        ("ingest", 10000, 0.2),
        ("graph jobs (2)", 1000, None),
        ("graph jobs (2)", 10000, 1.0),
        ("candidates", 1000, None),
        ("candidates", 10000, 2.0),
        ("feature tables (2)", 1000, None),
        ("feature tables (2)", 10000, 1.0),
        ("ranked_feeds", 1000, None),
        ("ranked_feeds", 10000, 0.5),
        ("publish", 1000, None),
        ("publish", 10000, 0.5),
    ]
    table = summary_table(combined)
    assert table.startswith(
        "`python -m benchmarks.suite --sizes 1000`, t1, commit 0123456789, 2 CPUs, 23.5 GB\n"
        "`python -m benchmarks.suite --sizes 10000`, t2, commit 0123456789, 2 CPUs, 23.5 GB\n\n"
    )
    assert "| candidates | 10,000 | 1,200.0 | 9,000 | 2.00 |" in table

    paths = []
    for document in (small, large):
        paths.append(tmp_path / f"{document['started_at']}.json")
        paths[-1].write_text(json.dumps(document))
    assert main(["--combine", *map(str, paths), "--out", str(tmp_path / "combined.json")]) == 0
    assert capsys.readouterr().out == table + "\n"
    assert json.loads((tmp_path / "combined.json").read_text()) == combined


def test_combine_refuses_two_runs_of_one_size(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"two documents measured \[1000\] users"):
        combined_document([run_document([1000], one_size(1000), "t1"), run_document([1000], one_size(1000), "t2")])
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run_document([1000], one_size(1000), "t1")))
    with pytest.raises(SystemExit):
        main(["--combine", str(path), str(path)])
    assert "two documents measured [1000] users" in capsys.readouterr().err


def test_summary_table_of_a_run_where_nothing_succeeded_names_what_failed():
    document = {
        "command": "python -m benchmarks.suite",
        "started_at": "t",
        "git_commit": None,
        "git_dirty": None,
        "machine": {"cpus": 2, "memory_gb": 8.0},
        "summary": [{"kind": "failed", "benchmark": "generate_ingest", "detail": "exit status 1"}],
    }
    assert summary_table(document) == (
        "`python -m benchmarks.suite`, t, commit unknown, 2 CPUs, 8.0 GB\n\n"
        "Did not succeed: generate_ingest (failed: exit status 1).\n"
    )


def test_the_benchmark_json_is_read_after_anything_printed_before_it():
    assert parse_benchmark_output('warming up\n{\n  "benchmark": "x",\n  "results": [{"a": 1}]\n}\n') == {
        "benchmark": "x",
        "results": [{"a": 1}],
    }
    with pytest.raises(ValueError, match="no JSON document"):
        parse_benchmark_output("Traceback: nothing measured\n")


def python_step(name: str, code: str, *, requires: tuple[str, ...] = ()) -> Step:
    return Step(name, name, lambda: run_benchmark([sys.executable, "-c", code]), requires=requires)


def test_a_failing_benchmark_is_recorded_and_the_others_go_on():
    steps = [
        python_step(
            "broken",
            "import sys; print('loaded 3 tables', file=sys.stderr); "
            "print('no such table: candidates', file=sys.stderr); sys.exit(1)",
        ),
        python_step("fine", "import json; print(json.dumps({'benchmark': 'fine', 'value': 7}))"),
        python_step("after_broken", "print('{}')", requires=("broken",)),
        python_step("after_fine", "print('{}')", requires=("fine",)),
    ]
    written = []
    document = run_steps(
        steps, {"benchmarks": {}, "summary": []}, write=lambda d: written.append(json.loads(json.dumps(d)))
    )
    records = document["benchmarks"]
    broken = records["broken"]
    assert broken["status"] == "failed" and broken["returncode"] == 1
    assert broken["stderr_tail"] == "loaded 3 tables\nno such table: candidates\n"
    assert records["fine"]["status"] == "ok" and records["fine"]["result"] == {"benchmark": "fine", "value": 7}
    assert records["fine"]["seconds"] > 0 and records["fine"]["peak_rss_mb"] >= 0
    assert {k: v for k, v in records["after_broken"].items() if k != "finished_at"} == {
        "status": "skipped",
        "reason": "needs broken, which did not succeed",
    }
    assert all(datetime.fromisoformat(record["finished_at"]).tzinfo is not None for record in records.values())
    assert records["after_fine"]["status"] == "ok"
    # The document was written after every step, the first time with the failure alone.
    assert [list(d["benchmarks"]) for d in written] == [
        ["broken"],
        ["broken", "fine"],
        ["broken", "fine", "after_broken"],
        ["broken", "fine", "after_broken", "after_fine"],
    ]
    assert written[0]["summary"] == [{"kind": "failed", "benchmark": "broken", "detail": "exit status 1"}]
    assert exit_status(document) == 1
    assert exit_status({"benchmarks": {"fine": records["fine"]}}) == 0


def test_a_resumed_run_keeps_what_succeeded_before_and_runs_the_rest():
    ran = []

    def step(name: str, *, requires: tuple[str, ...] = ()) -> Step:
        return Step(
            name,
            name.split("@")[0],
            lambda: ran.append(name) or {"status": "ok", "seconds": 1.0, "result": {}},
            requires=requires,
        )

    steps = [
        step("graph_jobs"),
        step("ranking_batch@10", requires=("graph_jobs",)),
        step("publish@10", requires=("ranking_batch@10",)),
        step("serve"),
    ]
    previous = {
        "sizes": [10],
        "started_at": "2026-12-01T10:00:00+00:00",
        "git_commit": "abc",
        "benchmarks": {
            "graph_jobs": {"status": "ok", "seconds": 900.0, "result": {}},
            "ranking_batch@10": {"status": "failed", "returncode": -9},
            "publish@10": {"status": "skipped", "reason": "needs ranking_batch@10"},
            "quality": {"status": "ok", "seconds": 5.0, "result": {}},
        },
    }  # not planned this time

    kept = kept_records(previous, steps, [10])
    document = run_steps(steps, {"benchmarks": {}, "summary": []}, write=lambda d: None, kept=kept)

    assert ran == ["ranking_batch@10", "publish@10", "serve"]  # the failed and skipped ones run again
    records = document["benchmarks"]
    assert list(records) == ["graph_jobs", "ranking_batch@10", "publish@10", "serve"]
    assert records["graph_jobs"]["seconds"] == 900.0
    assert records["graph_jobs"]["kept_from"] == {"started_at": "2026-12-01T10:00:00+00:00", "git_commit": "abc"}
    assert "kept_from" not in records["serve"]
    # Kept twice, a record still names the run that measured it; other sizes keep nothing.
    assert kept_records({**document, "sizes": [10], "started_at": "later"}, steps, [10])["graph_jobs"]["kept_from"] == {
        "started_at": "2026-12-01T10:00:00+00:00",
        "git_commit": "abc",
    }
    assert kept_records(previous, steps, [10, 100]) == {} and kept_records(None, steps, [10]) == {}


def test_resume_refuses_a_document_of_other_sizes_or_no_workdir(tmp_path, capsys):
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"sizes": [10000, 100000], "benchmarks": {}}))
    for argv in (
        ["--sizes", "2000", "--workdir", str(tmp_path), "--out", str(out), "--resume"],
        ["--sizes", "10000", "100000", "--out", str(out), "--resume"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "measured sizes [10000, 100000], not [2000]" in errors and "--resume needs the --workdir" in errors


def test_output_that_is_not_json_fails_the_benchmark():
    record = run_benchmark([sys.executable, "-c", "print('done, 3 rows')"])
    assert record["status"] == "failed" and record["returncode"] == 0
    assert "no JSON document" in record["stderr_tail"]


def test_a_command_that_cannot_start_is_recorded_as_failed():
    record = run_benchmark(["/nonexistent/homefeed-benchmark"])
    assert record["status"] == "failed" and record["returncode"] is None
    assert "could not start" in record["stderr_tail"]


def test_steps_selected_by_default_by_group_and_by_name():
    names = [
        "generate_ingest",
        "graph_jobs",
        "twhin",
        "ranking_inference",
        "train_rankers",
        "ranking_batch@1000",
        "ranking_batch@10000",
        "publish@1000",
        "publish@10000",
        "quality",
        "serve",
        "soak",
    ]
    steps = [Step(name, name.split("@")[0], dict) for name in names]

    def selected(only, *, models_available):
        return [s.name for s in select_steps(steps, only, models_available=models_available)]

    core = [
        "generate_ingest",
        "graph_jobs",
        "ranking_inference",
        "ranking_batch@1000",
        "ranking_batch@10000",
        "publish@1000",
        "publish@10000",
        "serve",
    ]
    assert selected(None, models_available=True) == core
    assert selected(None, models_available=False) == core[:3] + ["train_rankers"] + core[3:]
    assert selected(["publish", "soak"], models_available=False) == ["publish@1000", "publish@10000", "soak"]
    assert selected(["ranking_batch@10000"], models_available=False) == ["train_rankers", "ranking_batch@10000"]
    assert selected(["ranking_batch@10000"], models_available=True) == ["ranking_batch@10000"]


def ingested_world_folders(world: Path) -> Path:
    """The folders of a generated and ingested world (no data in them)."""
    from core.contract import RAW_TABLES

    for table in RAW_TABLES:
        (world / "raw" / table.name).mkdir(parents=True)
        (world / "warehouse" / "tables" / table.name / "_delta_log").mkdir(parents=True)
        (world / "warehouse" / "tables" / table.name / "_delta_log" / f"{0:020d}.json").touch()
    return world


def test_a_world_is_reused_only_with_every_raw_table_ingested(tmp_path):
    from core.contract import RAW_TABLES

    world = ingested_world_folders(tmp_path / "world-300")
    assert holds_ingested_world(world)
    (world / "warehouse" / "tables" / RAW_TABLES[-1].name / "_delta_log" / f"{0:020d}.json").unlink()
    assert not holds_ingested_world(world)  # its first write died before the commit
    assert not holds_ingested_world(tmp_path / "world-600")


def test_the_suite_runs_the_generator_benchmark_at_two_sizes_and_writes_one_document(tmp_path):
    out = tmp_path / "results" / "latest.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.suite",
            "--sizes",
            "600",
            "300",
            "--only",
            "generate_world",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["suite"] == "homefeed" and document["sizes"] == [300, 600]
    assert document["command"] == (
        f"python -m benchmarks.suite --sizes 600 300 --only generate_world --workdir {tmp_path / 'work'} --out {out}"
    )
    assert set(document["machine"]) == {"cpus", "memory_gb", "python", "platform"}
    assert len(document["git_commit"]) == 40
    assert list(document["benchmarks"]) == ["generate_world"]
    record = document["benchmarks"]["generate_world"]
    assert record["status"] == "ok" and record["command"].endswith("-m benchmarks.bench_generate 300 600")
    results = record["result"]["results"]
    assert record["result"]["benchmark"] == "generate_world" and [r["users"] for r in results] == [300, 600]
    small, large = results
    assert document["summary"] == [
        stage("generate (generator alone)", 300, small["wall_seconds"], small["peak_rss_mb"], None),
        stage(
            "generate (generator alone)",
            600,
            large["wall_seconds"],
            large["peak_rss_mb"],
            round(large["wall_seconds"] / small["wall_seconds"] / 2, 3),
        ),
    ]
    assert "| stage | users | wall s | peak MB | scaling |" in done.stdout
    assert f"| generate (generator alone) | 600 | {large['wall_seconds']:.1f} |" in done.stdout
    assert not (tmp_path / "work" / "world-300").exists()  # bench_generate keeps no world unless told to


def test_graph_jobs_resumed_keeps_the_jobs_measured_before_an_interruption(tmp_path, monkeypatch):
    import benchmarks.graph_jobs as graph_jobs

    world = ingested_world_folders(tmp_path / "world-300")
    jobs = {"a": ("a",), "b": ("b",), "c": ("c",)}
    ran, interrupt_at = [], {"c"}

    def fake_run(_world, selection):
        asset = selection.removeprefix("key:")
        if asset in interrupt_at:
            raise SystemExit(f"`homefeed run --select {selection}` failed")
        ran.append(asset)
        seconds = {"a": 10.0, "b": 20.0, "c": 30.0}[asset]
        return (
            {"process_seconds": seconds + 5, "peak_rss_mb": 100.0},
            {"step_seconds": {asset: seconds}, "rows": {asset: 7}, "check_phase_seconds": {}},
        )

    monkeypatch.setattr(graph_jobs, "_run", fake_run)
    with pytest.raises(SystemExit):
        graph_jobs.bench_size(300, tmp_path, 7, jobs, reuse_world=True)
    assert ran == ["a", "b"] and set(graph_jobs.measured_before(world)) == {"a", "b"}

    ran.clear()
    interrupt_at.clear()
    resumed = graph_jobs.bench_size(300, tmp_path, 7, jobs, reuse_world=True, resume=True)
    assert ran == ["c"]
    assert [resumed["jobs"][j]["job_seconds"] for j in "abc"] == [10.0, 20.0, 30.0]
    assert [resumed["jobs"][j].get("kept", False) for j in "abc"] == [True, True, False]

    ran.clear()
    graph_jobs.bench_size(300, tmp_path, 7, jobs, reuse_world=True)  # not resumed: every job again
    assert ran == ["a", "b", "c"] and len((world / graph_jobs.PROGRESS_FILE).read_text().splitlines()) == 3
