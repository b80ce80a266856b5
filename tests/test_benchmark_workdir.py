"""Benchmark work folders: a temporary one is cleaned up, one the user named is never removed."""

from __future__ import annotations

import shutil

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
    with pytest.raises(RuntimeError):
        with benchmark_workdir(given, keep=False, prefix="hf-test-") as workdir:
            (workdir / "world").mkdir()
            raise RuntimeError("a job failed")
    assert (given / "world").is_dir()
