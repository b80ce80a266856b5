"""Starting a local redis-server (Debian's binary, `homefeed setup` installs it): for the demo and the
tests, never a fake. Persistence off; the process is ours to stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def stop_process(process: subprocess.Popen, *, grace_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace_seconds`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process)


def start_redis(
    workdir: Path,
    *,
    port: int | None = None,
    maxmemory: str | None = None,
    timeout_seconds: float = 10.0,
    persistent: bool = False,
    extra_args: Sequence[str] = (),
) -> RedisServer:
    """redis-server on 127.0.0.1:`port` (a free one by default), working in `workdir`, ready to serve.
    `persistent`: an append-only file in `workdir`, fsynced on every write, so a server restarted on
    the same folder comes back with everything it acknowledged (as a deployment runs it).
    `extra_args`: more redis-server options, last."""
    import redis

    from core.setup_checks import ensure_redis_server

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(ensure_redis_server()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if persistent else "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    if persistent:
        command += ["--appendfsync", "always"]
    if maxmemory:
        command += ["--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"]
    command += list(extra_args)
    log = open(workdir / f"redis-{port}.log", "ab")  # noqa: SIM115 - the server's stdout, closed with it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = RedisServer(process, port)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(
                    f"redis-server did not start on port {port}; see {workdir / f'redis-{port}.log'}"
                ) from None
            time.sleep(0.05)


def ensure_local_redis(url: str, workdir: Path) -> RedisServer | None:
    """A Redis at `url`: None if one already answers there; else, when `url` is on this machine, a
    redis-server started on its port (left running for the API to read); else an error."""
    from urllib.parse import urlparse

    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return None
    except redis.ConnectionError:
        pass
    parsed = urlparse(url)
    if parsed.scheme != "redis" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError(
            f"no Redis answers at {url}, and it is not on this machine: start it, or set HOMEFEED_REDIS_URL"
        )
    return start_redis(workdir, port=parsed.port or 6379)


@dataclass
class LocalRedisCluster:
    """A Redis Cluster of masters only, on loopback: the first node's URL is the one to configure."""

    nodes: list[RedisServer]
    workdir: Path

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def cluster_node_args(port: int, bus_port: int) -> list[str]:
    """redis-server options of a cluster node: its own nodes file (in its own folder) and a bus
    port picked free (the default, port + 10000, may be taken or past 65535)."""
    return [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        f"nodes-{port}.conf",
        "--cluster-port",
        str(bus_port),
        "--cluster-node-timeout",
        "5000",
    ]


def cluster_create_command(redis_cli: str, ports: Sequence[int]) -> list[str]:
    return [
        redis_cli,
        "--cluster",
        "create",
        *(f"127.0.0.1:{port}" for port in ports),
        "--cluster-replicas",
        "0",
        "--cluster-yes",
    ]


def cluster_state(port: int) -> dict[str, str]:
    """CLUSTER INFO of the node on `port`, as text fields (cluster_state, cluster_slots_assigned, ...)."""
    import redis

    info = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2).execute_command("CLUSTER INFO")
    return {str(k): str(v) for k, v in info.items()}  # redis-py parses the reply into a dict


def cluster_ready(info: dict[str, str], masters: int) -> bool:
    """The node sees every slot served and every master known."""
    return (
        info.get("cluster_state") == "ok"
        and info.get("cluster_slots_ok") == "16384"
        and info.get("cluster_known_nodes") == str(masters)
    )


def start_redis_cluster(workdir: Path, *, masters: int = 3, timeout_seconds: float = 30.0) -> LocalRedisCluster:
    """`masters` cluster-enabled redis-servers on loopback (persistence off, each in a folder of its
    own), joined by `redis-cli --cluster create` with no replicas, ready when every node says
    cluster_state:ok; a cluster that does not form is stopped and reported with the nodes' logs."""
    from core.setup_checks import ensure_redis_server

    redis_cli = shutil.which("redis-cli") or str(ensure_redis_server().with_name("redis-cli"))
    nodes: list[RedisServer] = []
    cluster = LocalRedisCluster(nodes, workdir)
    try:
        for _ in range(masters):
            port = free_port()
            nodes.append(
                start_redis(workdir / f"node-{port}", port=port, extra_args=cluster_node_args(port, free_port()))
            )
        created = subprocess.run(
            cluster_create_command(redis_cli, cluster.ports), capture_output=True, text=True, timeout=timeout_seconds
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited {created.returncode}:\n"
                f"{created.stdout[-2000:]}{created.stderr[-2000:]}{_log_tails(cluster)}"
            )
        deadline = time.monotonic() + timeout_seconds
        while not all(cluster_ready(cluster_state(port), masters) for port in cluster.ports):
            if time.monotonic() > deadline:
                states = {port: cluster_state(port) for port in cluster.ports}
                raise RuntimeError(
                    f"the Redis Cluster on ports {cluster.ports} did not reach cluster_state:ok "
                    f"within {timeout_seconds:.0f} s: {states}{_log_tails(cluster)}"
                )
            time.sleep(0.1)
        return cluster
    except BaseException:
        cluster.stop()
        raise


def log_tail(path: Path, *, lines: int = 30) -> str:
    """The last `lines` lines of a daemon's log, for an error message."""
    if not path.exists():
        return f"(no {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _log_tails(cluster: LocalRedisCluster, lines: int = 15) -> str:
    logs = (cluster.workdir / f"node-{node.port}" / f"redis-{node.port}.log" for node in cluster.nodes)
    return "".join(f"\n--- {log} ---\n{log_tail(log, lines=lines)}" for log in logs)
