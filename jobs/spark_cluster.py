"""A Spark standalone cluster on this machine: a master and N workers on 127.0.0.1, started from the
Spark distribution that pip's pyspark ships (it has `bin/spark-class` but no `sbin/start-*.sh`).

It exists to show that the pipeline runs on a cluster by configuration alone
(`HOMEFEED_SPARK_MASTER=spark://...`): `tests/test_spark_cluster.py` and `make cluster-check`
(`benchmarks/cluster_check.py`) build a world on one and compare its tables with a local-mode build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.redis_server import free_port, log_tail, stop_process

LOOPBACK = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# The master and worker daemons only schedule; Spark's default 1 GB heap each is waste on a laptop.
DAEMON_MEMORY = "256m"


class ClusterStartError(RuntimeError):
    """The master or a worker did not come up in time (the message ends with their log tails)."""


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark, found the way pyspark finds it."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def java_home(environment: Mapping[str, str]) -> Path | None:
    """$JAVA_HOME, else the JDK of the `java` on PATH (the one a local-mode driver runs), else None.

    Set explicitly so the daemons and the executors they fork run the same JVM as the driver."""
    if environment.get("JAVA_HOME"):
        return Path(environment["JAVA_HOME"])
    java = shutil.which("java", path=environment.get("PATH"))
    return Path(java).resolve().parents[1] if java else None


def cluster_environment(base: Mapping[str, str], *, spark: Path, java: Path | None, python: str) -> dict[str, str]:
    """The daemons' environment, which the executors inherit: this Spark and JVM, this Python for
    the executors' Python workers (pandas and Arrow UDFs, model scoring), everything on loopback."""
    environment = {
        **base,
        "SPARK_HOME": str(spark),
        "PYSPARK_PYTHON": python,
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
    }
    if java is not None:
        environment["JAVA_HOME"] = str(java)
    return environment


def master_command(spark: Path, *, port: int, webui_port: int) -> list[str]:
    return [
        str(spark / "bin" / "spark-class"),
        MASTER_CLASS,
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--webui-port",
        str(webui_port),
    ]


def worker_command(
    spark: Path, master_url: str, *, cores: int, memory: str, webui_port: int, work_dir: Path
) -> list[str]:
    return [
        str(spark / "bin" / "spark-class"),
        WORKER_CLASS,
        master_url,
        "--host",
        LOOPBACK,
        "--cores",
        str(cores),
        "--memory",
        memory,
        "--webui-port",
        str(webui_port),
        "--work-dir",
        str(work_dir),
    ]


def alive_workers(master_state: Mapping) -> int:
    """Workers the master's /json reports ALIVE (dead ones stay listed for a while)."""
    return sum(1 for worker in master_state.get("workers", []) if worker.get("state") == "ALIVE")


def read_master_state(webui_port: int) -> dict | None:
    """The master UI's /json, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{webui_port}/json", timeout=2) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


@dataclass
class StandaloneCluster:
    master_url: str
    webui_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        """Workers first (each stops its executors), then the master."""
        for process in reversed(self.processes):
            stop_process(process)

    def diagnostics(self) -> str:
        return "\n".join(f"--- {log}\n{log_tail(log)}" for log in self.logs)


def _start(command: list[str], log: Path, environment: Mapping[str, str], cwd: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child holds its own descriptor; ours closes here
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(environment), cwd=cwd)


def wait_for_workers(cluster: StandaloneCluster, *, workers: int, timeout_seconds: float) -> None:
    """Return once `workers` workers are ALIVE at the master; raise ClusterStartError (with the
    logs' tails) when a process exits or `timeout_seconds` pass first."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        state = read_master_state(cluster.webui_port)
        if state is not None and alive_workers(state) >= workers:
            return
        exited = [log.stem for process, log in zip(cluster.processes, cluster.logs) if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            reason = f"{', '.join(exited)} exited" if exited else f"not ready after {timeout_seconds:.0f} s"
            alive = alive_workers(state) if state else 0
            raise ClusterStartError(
                f"Spark standalone cluster at {cluster.master_url}: {reason}; "
                f"{alive} of {workers} workers alive\n{cluster.diagnostics()}"
            )
        time.sleep(0.5)


def start_standalone_cluster(
    workdir: Path,
    *,
    workers: int = 2,
    cores_per_worker: int = 1,
    memory_per_worker: str = "2g",
    timeout_seconds: float = 120.0,
) -> StandaloneCluster:
    """A master and `workers` workers on free loopback ports, logs and work dirs under `workdir`,
    returned once every worker is registered."""
    workdir.mkdir(parents=True, exist_ok=True)
    spark = spark_home()
    environment = cluster_environment(os.environ, spark=spark, java=java_home(os.environ), python=sys.executable)
    port, webui_port = free_port(), free_port()
    cluster = StandaloneCluster(f"spark://{LOOPBACK}:{port}", webui_port)
    try:
        log = workdir / "master.log"
        cluster.logs.append(log)
        cluster.processes.append(
            _start(master_command(spark, port=port, webui_port=webui_port), log, environment, workdir)
        )
        for index in range(workers):
            work_dir = workdir / f"worker-{index}"
            work_dir.mkdir(exist_ok=True)
            log = workdir / f"worker-{index}.log"
            cluster.logs.append(log)
            command = worker_command(
                spark,
                cluster.master_url,
                cores=cores_per_worker,
                memory=memory_per_worker,
                webui_port=free_port(),
                work_dir=work_dir,
            )
            cluster.processes.append(_start(command, log, environment, workdir))
        wait_for_workers(cluster, workers=workers, timeout_seconds=timeout_seconds)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def standalone_cluster(workdir: Path, workers: int = 2, **options) -> Iterator[str]:
    """The master URL of a cluster that lives as long as the `with` block (options: see
    start_standalone_cluster)."""
    cluster = start_standalone_cluster(workdir, workers=workers, **options)
    try:
        yield cluster.master_url
    finally:
        cluster.stop()
