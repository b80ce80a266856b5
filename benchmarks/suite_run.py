"""Running one benchmark of the suite (`benchmarks/suite.py`) as a subprocess: its JSON output read
into a record with its wall time and the peak resident memory of its process tree, or a failed
record with the tail of its stderr."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from benchmarks.measure import tree_rss_bytes

REPO = Path(__file__).resolve().parents[1]
STDERR_TAIL_CHARS = 3000


def parse_benchmark_output(stdout: str) -> dict:
    """The one JSON document a benchmark prints; anything printed before it is ignored."""
    text = stdout.strip()
    starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n" and text[i + 1 : i + 2] == "{"]
    for start in starts:
        try:
            document = json.loads(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(document, dict):
            return document
    raise ValueError(f"no JSON document at the end of the output: {text[-300:]!r}")


def failed_record(command: list[str], seconds: float, returncode: int | None, stderr_tail: str) -> dict:
    return {
        "status": "failed",
        "command": shlex.join(command),
        "seconds": seconds,
        "returncode": returncode,
        "stderr_tail": stderr_tail[-STDERR_TAIL_CHARS:],
    }


def run_benchmark(
    command: list[str],
    *,
    users: int | None = None,
    env: dict[str, str] | None = None,
    read_result: Callable[[str], dict] = parse_benchmark_output,
) -> dict:
    """Run `command` from the repository root, its stderr passed through as it comes, its stdout read
    into the record's "result" by `read_result`; wall time and the peak resident memory of its
    process tree are measured here."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            encoding="utf-8",
            errors="replace",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as error:
        return failed_record(command, 0.0, None, f"could not start: {error}")
    stderr_lines: deque[str] = deque(maxlen=200)
    peak_bytes = 0
    done = threading.Event()

    def pass_stderr_through() -> None:
        for line in process.stderr:
            sys.stderr.write(line)
            stderr_lines.append(line)

    def sample_memory() -> None:
        nonlocal peak_bytes
        while not done.is_set():
            peak_bytes = max(peak_bytes, tree_rss_bytes(process.pid))
            done.wait(0.25)

    threads = [
        threading.Thread(target=pass_stderr_through, daemon=True),
        threading.Thread(target=sample_memory, daemon=True),
    ]
    for thread in threads:
        thread.start()
    stdout = process.stdout.read()
    process.wait()
    done.set()
    for thread in threads:
        thread.join()
    seconds = round(time.monotonic() - started, 2)
    stderr_tail = "".join(stderr_lines)
    if process.returncode != 0:
        return failed_record(command, seconds, process.returncode, stderr_tail)
    try:
        result = read_result(stdout)
    except (ValueError, OSError, KeyError) as error:
        return failed_record(command, seconds, process.returncode, f"{stderr_tail}\n{error}")
    record = {
        "status": "ok",
        "command": shlex.join(command),
        "seconds": seconds,
        "peak_rss_mb": round(peak_bytes / 2**20, 1),
    }
    return {**record, **({"users": users} if users is not None else {}), "result": result}


def python_module(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.{module}", *map(str, args)]
