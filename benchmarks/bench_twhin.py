"""Benchmark TwHIN training: edges, seconds, edges per second, peak memory, device.

    python -m benchmarks.bench_twhin                               # generate 10K and 100K users, train
    python -m benchmarks.bench_twhin --worlds /tmp/w10k /tmp/wh100k # existing worlds or warehouses
    python -m benchmarks.bench_twhin --sizes 100000 --device cuda   # on a GPU machine

A world is a folder with `raw/` (what `homefeed generate` writes: Parquet per the data contract)
or `tables/` (a warehouse: Delta tables); without `--worlds`, each size is generated (seed 7)
into a temporary folder. Each size trains in a fresh subprocess, so its peak resident memory
(ru_maxrss) is its own. Prints one JSON document:

    {"benchmark": "twhin", "cpus": ..., "results": [
        {"users": N, "edges": E, "edges_per_relation": {...}, "nodes": {...}, "epochs": ..,
         "read_seconds": s, "build_edges_seconds": s, "train_seconds": s, "seconds_per_epoch": s,
         "edges_per_second": E * epochs / train_seconds, "peak_rss_mb": mb, "device": "cpu",
         "threads": t, "final_loss": l, "config": {...}}, ...]}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import benchmark_workdir

REPO = Path(__file__).resolve().parents[1]
SEED = 7


def read_world(world: Path):
    """The training columns of follows, engagements and tweets, from a warehouse or a raw world."""
    from core.storage import is_delta_table
    from models.twhin.export import INPUT_COLUMNS, TRAINING_ACTIONS, read_training_tables

    if is_delta_table(world / "tables" / "follows"):
        return read_training_tables({name: world / "tables" / name for name in INPUT_COLUMNS})
    import pyarrow.dataset as ds

    raw = world / "raw"
    if not raw.is_dir():
        raise SystemExit(f"{world} has neither tables/ (a warehouse) nor raw/ (a generated world)")
    tables = {}
    for name, columns in INPUT_COLUMNS.items():
        dataset = ds.dataset(str(raw / name), format="parquet")
        row_filter = ds.field("action").isin(TRAINING_ACTIONS) if name == "engagements" else None
        tables[name] = dataset.to_table(columns=columns, filter=row_filter)
    return tables


def _child(world: Path, config_json: str, result: Path) -> None:
    sys.path.insert(0, str(REPO))
    from models.twhin import TwhinConfig, build_edges, train_twhin

    config = TwhinConfig(**json.loads(config_json))
    started = time.monotonic()
    tables = read_world(world)
    read_seconds = time.monotonic() - started
    started = time.monotonic()
    edges = build_edges(tables["follows"], tables["engagements"], tables["tweets"])
    build_seconds = time.monotonic() - started
    del tables
    trained = train_twhin(edges, config, log=lambda line: print(line, file=sys.stderr, flush=True))
    epochs = max(config.epochs, 1)
    result.write_text(
        json.dumps(
            {
                "edges": edges.num_edges,
                "edges_per_relation": edges.edges_per_relation(),
                "nodes": {t: edges.num_nodes(t) for t in edges.node_ids},
                "epochs": config.epochs,
                "read_seconds": round(read_seconds, 2),
                "build_edges_seconds": round(build_seconds, 2),
                "train_seconds": round(trained.seconds, 2),
                "seconds_per_epoch": round(trained.seconds / epochs, 2),
                "edges_per_second": round(edges.num_edges * config.epochs / max(trained.seconds, 1e-9)),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "device": trained.device,
                "threads": config.num_threads,
                "final_loss": trained.final_loss,
                "config": dataclasses.asdict(config),
            }
        )
    )


def _generate(users: int, out: Path) -> Path:
    homefeed = str(Path(sys.executable).with_name("homefeed"))
    subprocess.run(
        [homefeed, "generate", "--users", str(users), "--seed", str(SEED), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    return out


def _users_in(world: Path) -> int | None:
    import pyarrow.dataset as ds

    for folder, fmt in ((world / "tables" / "users", None), (world / "raw" / "users", "parquet")):
        if folder.is_dir():
            if fmt is None:
                from deltalake import DeltaTable

                return DeltaTable(str(folder)).to_pyarrow_dataset().count_rows()
            return ds.dataset(str(folder), format=fmt).count_rows()
    return None


def run_world(world: Path, config: dict, base: Path) -> dict:
    result = base / f"result_{abs(hash(str(world)))}.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_twhin",
        "--child",
        str(world),
        "--config",
        json.dumps(config),
        "--result",
        str(result),
    ]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=sys.stderr, stderr=sys.stderr, cwd=REPO)
    outcome = json.loads(result.read_text())
    return {
        "world": str(world),
        "users": _users_in(world),
        **outcome,
        "wall_seconds": round(time.monotonic() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="users to generate")
    parser.add_argument("--worlds", type=Path, nargs="+", help="existing worlds or warehouses (instead of --sizes)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--random-negatives", type=int)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep generated worlds")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.config, args.result)
        return

    config: dict = {"device": args.device}
    for key in ("epochs", "dim", "batch_size", "random_negatives"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    if args.threads is not None:
        config["num_threads"] = args.threads
    with benchmark_workdir(args.workdir, keep=args.keep, prefix="homefeed-bench-twhin-") as workdir:
        worlds = args.worlds or [_generate(n, workdir / f"world-{n}") for n in sorted(args.sizes)]
        results = [run_world(world.resolve(), config, workdir) for world in worlds]
    print(json.dumps({"benchmark": "twhin", "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
