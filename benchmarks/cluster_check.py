"""Build one synthetic world twice, in local mode and on a Spark standalone cluster on loopback (a
master and two one-core workers, `jobs.spark_cluster`), and compare every Delta table the two
builds wrote; print one JSON document. `make cluster-check` runs it.

    python -m benchmarks.cluster_check [--users 150] [--seed 3] [--workdir DIR] [--keep]

Both builds are `homefeed run` processes configured by environment variables only (the cluster's
differs by HOMEFEED_SPARK_MASTER, HOMEFEED_WAREHOUSE and HOMEFEED_SPARK_CONF): the default build
(ingestion to the feature tables, every table behind its data-quality check), then `ranked_feeds`
scored by the same fixed models (registered once, copied into both warehouses). The training
set and the rankers are left out: the training set is more passes of the same graph jobs over side
warehouses, and the rankers train in the driver on rows whose order a build does not fix, so two
builds' models (and feeds) would differ for reasons that have nothing to do with the cluster.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from benchmarks.measure import benchmark_workdir
from models.registry import MODELS_DIRNAME

LOCAL_MASTER = "local[2]"  # as many cores as the check's cluster: two workers of one core
SHUFFLE_PARTITIONS = 2
DRIVER_MEMORY = "2g"
# Executors sized to the check's workers; set through HOMEFEED_SPARK_CONF as a deployment would.
CLUSTER_SPARK_CONF = {"spark.executor.memory": "1g", "spark.executor.cores": "1"}
BUILD_STEPS = (None, "key:ranked_feeds")  # None: the default build
# Shuffles may change the order of a float sum; anything further apart is a real difference.
REL_TOL, ABS_TOL = 1e-6, 1e-9


# --- running the builds -----------------------------------------------------------------------


def homefeed_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("homefeed")), *args]


def build_environment(
    base: Mapping[str, str], *, master: str, warehouse: Path, raw_input: Path, spark_conf: Mapping[str, str]
) -> dict[str, str]:
    """What a build reads: only HOMEFEED_* settings tell the local build from the cluster build."""
    return {
        **base,
        "TZ": "UTC",
        "HOMEFEED_SPARK_MASTER": master,
        "HOMEFEED_WAREHOUSE": str(warehouse),
        "HOMEFEED_RAW_INPUT": str(raw_input),
        "HOMEFEED_SPARK_SHUFFLE_PARTITIONS": str(SHUFFLE_PARTITIONS),
        "HOMEFEED_SPARK_DRIVER_MEMORY": DRIVER_MEMORY,
        "HOMEFEED_SPARK_CONF": json.dumps(dict(spark_conf)),
    }


class BuildFailed(RuntimeError):
    pass


def run_build(environment: Mapping[str, str], *, log: Path, steps: Sequence[str | None] = BUILD_STEPS) -> float:
    """Run `homefeed run` once per step (a selection; None is the default build); wall seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for selection in steps:
        command = homefeed_command("run", *(["--select", selection] if selection else []))
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            code = subprocess.run(command, env=dict(environment), stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise BuildFailed(
                f"{' '.join(command)} exited {code} "
                f"(HOMEFEED_SPARK_MASTER={environment['HOMEFEED_SPARK_MASTER']}):\n{tail}"
            )
    return round(time.monotonic() - started, 1)


# --- comparing the warehouses -----------------------------------------------------------------


def delta_tables_under(root: Path) -> dict[str, Path]:
    """Every Delta table below `root` (the side warehouses included), by its path relative to it."""
    return {str(log.parent.relative_to(root)): log.parent for log in sorted(root.rglob("_delta_log"))}


def read_table(path: Path) -> pa.Table:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table()


def sort_key(value) -> tuple:
    """A total order over a cell of any type, floats rounded so that values equal within the
    tolerance (almost always) sort alike; None and NaN first."""
    if value is None:
        return (0,)
    if isinstance(value, float):
        return (1, float("-inf")) if math.isnan(value) else (1, round(value, 6))
    if isinstance(value, (list, tuple)):
        return (2, tuple(sort_key(v) for v in value))
    if isinstance(value, dict):
        return (3, tuple((k, sort_key(v)) for k, v in sorted(value.items())))
    return (4, str(type(value)), value)


def sorted_rows(table: pa.Table) -> list[tuple]:
    """The table's rows as tuples, sorted by every column."""
    rows = [tuple(row[name] for name in table.column_names) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: tuple(sort_key(v) for v in row))


def values_match(left, right, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    """Equal, floats within the tolerance (NaN matching NaN), element by element inside lists,
    structs and maps."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or math.isclose(left, right, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(
            values_match(a, b, rel_tol=rel_tol, abs_tol=abs_tol) for a, b in zip(left, right)
        )
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(
            values_match(left[k], right[k], rel_tol=rel_tol, abs_tol=abs_tol) for k in left
        )
    return left == right


def table_difference(local: pa.Table, cluster: pa.Table, *, where: str = "on the cluster") -> str | None:
    """None when the two tables hold the same rows; else what differs first (`where`: the second
    build's name in the message)."""
    if local.schema.names != cluster.schema.names:
        return f"columns {local.schema.names} vs {cluster.schema.names}"
    if local.num_rows != cluster.num_rows:
        return f"{local.num_rows} rows locally, {cluster.num_rows} {where}"
    for index, (a, b) in enumerate(zip(sorted_rows(local), sorted_rows(cluster))):
        if not values_match(a, b):
            differing = [
                f"{name} {x!r} locally, {y!r} {where}"
                for name, x, y in zip(local.column_names, a, b)
                if not values_match(x, y)
            ]
            return f"sorted row {index}: " + "; ".join(differing)
    return None


@dataclass(frozen=True)
class WarehouseComparison:
    rows: dict[str, int]  # per table present in both, the local build's row count
    missing: tuple[str, ...]  # tables only the local build wrote
    extra: tuple[str, ...]  # tables only the cluster build wrote
    differences: dict[str, str]  # per table, what differs

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differences)


def compare_warehouses(local_root: Path, cluster_root: Path, *, where: str = "on the cluster") -> WarehouseComparison:
    """Every Delta table of two warehouses: the same set, the same rows (floats within tolerance)."""
    local, cluster = delta_tables_under(local_root), delta_tables_under(cluster_root)
    rows, differences = {}, {}
    for name in sorted(local.keys() & cluster.keys()):
        left, right = read_table(local[name]), read_table(cluster[name])
        rows[name] = left.num_rows
        difference = table_difference(left, right, where=where)
        if difference:
            differences[name] = difference
    return WarehouseComparison(
        rows, tuple(sorted(local.keys() - cluster.keys())), tuple(sorted(cluster.keys() - local.keys())), differences
    )


# --- the check --------------------------------------------------------------------------------


def cluster_check(workdir: Path, *, users: int, seed: int) -> dict:
    """Generate a world, build it locally and on a standalone cluster, compare; the summary."""
    from jobs.spark_cluster import standalone_cluster
    from jobs.synthetic import WorldConfig, generate_world
    from models.fixed_rankers import register_fixed_rankers

    world = workdir / "world"
    shutil.rmtree(world, ignore_errors=True)
    generate_world(WorldConfig(n_users=users, seed=seed), out_dir=world)
    local_wh, cluster_wh = workdir / "local" / "warehouse", workdir / "cluster" / "warehouse"
    for warehouse in (local_wh, cluster_wh):
        shutil.rmtree(warehouse, ignore_errors=True)
    register_fixed_rankers(local_wh, reason="fixed models of the cluster check")
    shutil.copytree(local_wh / MODELS_DIRNAME, cluster_wh / MODELS_DIRNAME)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    local_seconds = run_build(
        build_environment(environment, master=LOCAL_MASTER, warehouse=local_wh, raw_input=world / "raw", spark_conf={}),
        log=workdir / "local" / "build.log",
    )
    started = time.monotonic()
    with standalone_cluster(workdir / "cluster" / "spark", workers=2) as master_url:
        cluster_start_seconds = round(time.monotonic() - started, 1)
        cluster_seconds = run_build(
            build_environment(
                environment,
                master=master_url,
                warehouse=cluster_wh,
                raw_input=world / "raw",
                spark_conf=CLUSTER_SPARK_CONF,
            ),
            log=workdir / "cluster" / "build.log",
        )
    comparison = compare_warehouses(local_wh, cluster_wh)
    return {
        "equal": comparison.equal,
        "users": users,
        "seed": seed,
        "tables_compared": len(comparison.rows),
        "rows_compared": sum(comparison.rows.values()),
        "local_seconds": local_seconds,
        "cluster_seconds": cluster_seconds,
        "cluster_start_seconds": cluster_start_seconds,
        "missing_on_cluster": list(comparison.missing),
        "extra_on_cluster": list(comparison.extra),
        "differences": comparison.differences,
        "rows": comparison.rows,
    }


def check_main(argv: Sequence[str] | None, *, description: str, prefix: str, check: Callable[..., dict]) -> int:
    """The command line of a build-twice-and-compare check: `check(workdir, users=, seed=)` in the
    workdir given or a temporary one; prints its summary; exit status 1 unless it found the builds equal."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--rows", action="store_true", help="also print the row count of every table")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with benchmark_workdir(args.workdir, keep=args.keep, prefix=prefix) as workdir:
        summary = check(workdir, users=args.users, seed=args.seed)
    summary["seconds"] = round(time.monotonic() - started, 1)
    if not args.rows:
        summary.pop("rows")
    print(json.dumps(summary, indent=2))
    return 0 if summary["equal"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    return check_main(argv, description=__doc__.split("\n\n")[0], prefix="homefeed-cluster-check-", check=cluster_check)


if __name__ == "__main__":
    sys.exit(main())
