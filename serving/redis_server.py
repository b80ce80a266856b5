"""Starting a local redis-server (Debian's binary, `homefeed setup` installs it): for the demo and the
tests, never a fake. Persistence off; the process is ours to stop."""

from __future__ import annotations

import socket
import subprocess
import time
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


def start_redis(workdir: Path, *, port: int | None = None, maxmemory: str | None = None,
                timeout_seconds: float = 10.0, persistent: bool = False) -> RedisServer:
    """redis-server on 127.0.0.1:`port` (a free one by default), working in `workdir`, ready to serve.
    `persistent`: an append-only file in `workdir`, fsynced on every write, so a server restarted on
    the same folder comes back with everything it acknowledged (as a deployment runs it)."""
    import redis

    from orchestration.setup_checks import ensure_redis_server

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [str(ensure_redis_server()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes" if persistent else "no", "--dir", str(workdir), "--daemonize", "no",
               "--protected-mode", "yes"]
    if persistent:
        command += ["--appendfsync", "always"]
    if maxmemory:
        command += ["--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"]
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
                raise RuntimeError(f"redis-server did not start on port {port}; see {workdir / f'redis-{port}.log'}")
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
        raise RuntimeError(f"no Redis answers at {url}, and it is not on this machine: start it, or set HOMEFEED_REDIS_URL")
    return start_redis(workdir, port=parsed.port or 6379)
