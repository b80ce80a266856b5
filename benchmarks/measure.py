"""Wall time and peak memory of a command and all its descendants (the JVM included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    """`pid`'s child processes; none once it has exited (its /proc entries vanish while being read)."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and every descendant, summed."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
        except OSError:
            continue
        stack += _children(pid)
    return total


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def measure_command(command: list[str], *, env: dict[str, str] | None = None, interval_s: float = 0.25) -> Measured:
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(process.pid))
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    return Measured(round(time.monotonic() - started, 2), round(peak / 2**20, 1), process.returncode, stdout, stderr)


@contextmanager
def benchmark_workdir(workdir: Path | None, *, keep: bool, prefix: str) -> Iterator[Path]:
    """Where a benchmark writes its worlds: `workdir` as given (never removed: it may hold the only
    copy of a long run's output), or a temporary folder removed afterwards unless `keep`."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    created = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield created
    finally:
        if not keep:
            shutil.rmtree(created, ignore_errors=True)
