"""Benchmark the synthetic world generator.

    python benchmarks/bench_generate.py                 # 10000 and 100000 users
    python benchmarks/bench_generate.py 10000 1000000 --seed 7 --keep /data/bench

Each size runs in a fresh subprocess (so peak memory is that world's alone, read from the
child's rusage ru_maxrss); prints ONE JSON document to stdout:
    {"benchmark": "generate_world", "seed": ..., "cpus": ..., "results": [
        {"users": N, "seconds": s, "wall_seconds": s, "peak_rss_mb": mb,
         "rows_per_table": {...}, "truth_rows": {...}, "disk_mb": mb}, ...]}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(n_users: int, seed: int, out_dir: Path, result: Path) -> None:
    sys.path.insert(0, str(REPO))
    from jobs.synthetic import WorldConfig, generate_world

    summary = generate_world(WorldConfig(n_users=n_users, seed=seed), out_dir=out_dir)
    result.write_text(
        json.dumps(
            {
                "seconds": round(summary.seconds, 3),
                "rows_per_table": summary.rows_per_table,
                "truth_rows": summary.truth_rows,
            }
        )
    )


def _disk_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def run_size(n_users: int, seed: int, base: Path, keep: bool) -> dict:
    out_dir = base / f"world_{n_users}"
    result = base / f"result_{n_users}.json"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(n_users),
        "--seed",
        str(seed),
        "--out",
        str(out_dir),
        "--result",
        str(result),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"generation of {n_users} users failed with exit code {code}")
    data = json.loads(result.read_text())
    row = {
        "users": n_users,
        "seconds": data["seconds"],
        "wall_seconds": round(wall, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: ru_maxrss is in KiB
        "rows_per_table": data["rows_per_table"],
        "truth_rows": data["truth_rows"],
        "disk_mb": _disk_mb(out_dir),
    }
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", type=Path, default=None, help="write worlds under this directory and keep them")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.seed, args.out, args.result)
        return

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        base, cleanup = args.keep, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench_generate_")
        base = Path(cleanup.name)
    try:
        results = [run_size(n, args.seed, base, keep=args.keep is not None) for n in args.sizes]
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    print(
        json.dumps(
            {
                "benchmark": "generate_world",
                "seed": args.seed,
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
