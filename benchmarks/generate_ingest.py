"""Generate and ingest synthetic worlds of several sizes; print one JSON document.

    python benchmarks/generate_ingest.py [--sizes 10000 100000] [--workdir DIR]

Per size and stage (generate, ingest): wall seconds and peak resident memory of the whole process
tree (Spark's JVM included), the ingest time of each Dagster step, and the rows per table; then the
scaling factor of each stage between consecutive sizes (time ratio over user ratio: 1.0 is linear).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from benchmarks.measure import benchmark_workdir, measure_command

AS_OF = "2026-11-01T00:00:00+00:00"


def homefeed_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("homefeed")), *args]


def bench_size(users: int, workdir: Path, seed: int) -> dict:
    world = workdir / f"world-{users}"
    shutil.rmtree(world, ignore_errors=True)
    generate = measure_command(
        homefeed_command("generate", "--users", str(users), "--seed", str(seed), "--out", str(world))
    )
    if generate.returncode != 0:
        raise SystemExit(f"generate {users} failed:\n{generate.stderr[-3000:]}")
    report = world / "run-report.json"
    ingest = measure_command(
        homefeed_command(
            "run",
            "--input",
            str(world / "raw"),
            "--warehouse",
            str(world / "warehouse"),
            "--select",
            "group:bronze",
            "--report",
            str(report),
        ),
        env={"HOMEFEED_AS_OF": AS_OF},
    )
    if ingest.returncode != 0:
        raise SystemExit(f"ingest {users} failed:\n{ingest.stderr[-3000:]}")
    outcome = json.loads(report.read_text())
    return {
        "users": users,
        "generate": {"seconds": generate.seconds, "peak_rss_mb": generate.peak_rss_mb},
        "ingest": {
            "seconds": ingest.seconds,
            "peak_rss_mb": ingest.peak_rss_mb,
            "steps_seconds": outcome["step_seconds"],
        },
        "rows": outcome["rows"],
    }


def scaling(results: list[dict]) -> list[dict]:
    factors = []
    for small, large in zip(results, results[1:]):
        user_ratio = large["users"] / small["users"]
        factors.append(
            {
                "from_users": small["users"],
                "to_users": large["users"],
                **{
                    f"{stage}_time_ratio_per_user_ratio": round(
                        large[stage]["seconds"] / small[stage]["seconds"] / user_ratio, 3
                    )
                    for stage in ("generate", "ingest")
                },
            }
        )
    return factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated worlds and warehouses")
    args = parser.parse_args()
    with benchmark_workdir(args.workdir, keep=args.keep, prefix="homefeed-bench-") as workdir:
        results = [bench_size(n, workdir, args.seed) for n in sorted(args.sizes)]
    print(json.dumps({"benchmark": "generate_ingest", "sizes": results, "scaling": scaling(results)}, indent=2))


if __name__ == "__main__":
    main()
