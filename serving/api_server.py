"""Starting the API under uvicorn in a process of its own (`homefeed serve` with the settings passed
as HOMEFEED_* variables): for the demo, the tests and the benchmarks, the real server every time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.redis_server import stop_process


@dataclass
class ApiServer:
    process: subprocess.Popen | None  # None: one was already answering on the port
    base_url: str

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def start_api(
    *,
    port: int,
    environment: dict[str, str],
    log_path: Path | None = None,
    host: str = "127.0.0.1",
    timeout_seconds: float = 60.0,
    detach: bool = False,
) -> ApiServer:
    """`homefeed serve` on `host:port` with `environment` (HOMEFEED_* variables) over this process's,
    ready when it returns; its output goes to `log_path` (else discarded). `detach`: a session of its
    own, left running after this process exits (the demo's)."""
    base = f"http://{host}:{port}"
    sink = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the server's output
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--host", host, "--port", str(port)],
        env={**os.environ, **environment},
        stdout=sink,
        stderr=subprocess.STDOUT,
        start_new_session=detach,
    )
    server = ApiServer(process, base)
    deadline = time.monotonic() + timeout_seconds
    while not answers(base):
        if process.poll() is not None:
            detail = log_path.read_text()[-2000:] if log_path else f"exit code {process.returncode}"
            raise RuntimeError(f"the API exited: {detail}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the API did not answer on {base} within {timeout_seconds:.0f} s")
        time.sleep(0.1)
    return server


def ensure_api(*, port: int, environment: dict[str, str], log_path: Path) -> ApiServer:
    """The API on 127.0.0.1:`port`: the one already answering there, else a detached one started."""
    base = f"http://127.0.0.1:{port}"
    if answers(base):
        return ApiServer(None, base)
    return start_api(port=port, environment=environment, log_path=log_path, detach=True)
