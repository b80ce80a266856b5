"""Benchmark work folders: a temporary one is cleaned up, one the user named is never removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.measure import benchmark_workdir


def test_temporary_workdir_is_removed_unless_kept():
    with benchmark_workdir(None, keep=False, prefix="hf-test-") as workdir:
        assert workdir.is_dir()
    assert not workdir.exists()
    with benchmark_workdir(None, keep=True, prefix="hf-test-") as kept:
        (kept / "result.json").write_text("{}")
    assert (kept / "result.json").exists()
    shutil.rmtree(kept)


def test_named_workdir_survives_a_failed_run(tmp_path):
    given = tmp_path / "bench"
    with pytest.raises(RuntimeError), benchmark_workdir(given, keep=False, prefix="hf-test-") as workdir:
        (workdir / "world").mkdir()
        raise RuntimeError("a job failed")
    assert (given / "world").is_dir()


def test_memory_of_a_process_tree_counts_its_children_and_nothing_once_it_exited():
    import subprocess
    import sys
    import time

    from benchmarks.measure import PAGE_BYTES, _children, tree_rss_bytes

    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not _children(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = _children(parent.pid)
        own = {pid: int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES for pid in (parent.pid, child)}
        # Both are idle interpreters, so their resident sizes hardly move between the two reads.
        assert tree_rss_bytes(parent.pid) >= 0.9 * sum(own.values()) > own[parent.pid]
    finally:
        for pid in _children(parent.pid):
            subprocess.run(["kill", str(pid)], check=False)
        parent.kill()
        parent.wait()
    # The process has exited and its /proc entry is gone: no children, no memory, no exception.
    assert _children(parent.pid) == []
    assert tree_rss_bytes(parent.pid) == 0
