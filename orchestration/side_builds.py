"""Side builds of the evaluations: the asset graph run again, in-process and without checks, over a
cut of the raw input into a warehouse of its own. The warehouse's marker file says which input it
was built from, so an unchanged one is reused. (The training set's representations are assets of
their own, partitioned by the cut: `orchestration.snapshot_builds`.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.settings import HomefeedSettings
from orchestration.build_marker import built_from, write_build_marker
from orchestration.raw_cut import truncate_raw_input
from orchestration.run import run_assets

__all__ = ["build_eval_warehouse", "truncate_raw_input"]


def build_eval_warehouse(
    settings: HomefeedSettings,
    *,
    raw_dir: Path,
    warehouse: Path,
    as_of: datetime,
    fingerprint: str,
    rebuild: bool = False,
    selection: str | None = None,
) -> None:
    """Build every asset (or `selection`) from `raw_dir` into `warehouse` as of `as_of`, unless the
    warehouse's marker says it was built from the same input (`fingerprint`) already."""
    fingerprint = fingerprint if selection is None else f"{fingerprint}:{selection}"
    if rebuild or not built_from(warehouse, fingerprint):
        run_settings = settings.model_copy(update={"warehouse": warehouse, "raw_input": raw_dir, "as_of": as_of})
        outcome = run_assets(run_settings, selection=selection, checks=False)
        if not outcome.success:
            raise RuntimeError(f"building the warehouse in {warehouse} failed: {outcome.failure_text()}")
        write_build_marker(warehouse, fingerprint=fingerprint, as_of=as_of, step_seconds=outcome.step_seconds)
