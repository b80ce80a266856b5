"""Side builds: the asset graph run again, in-process and without checks, over a cut of the raw input
into a warehouse of its own (the training set's representations as of each day, the evaluations'
builds). A warehouse's marker file says which input it was built from, so an unchanged one is reused."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from core.contract import RAW_TABLES, arrow_schema
from core.settings import HomefeedSettings
from core.storage import read_parquet_folder, remove_tree
from jobs.candidate_eval import truncate_raw_table

BUILD_MARKER = "eval_build.json"


def truncate_raw_input(raw_dir: Path, out_dir: Path, *, cutoff: datetime) -> tuple[Path, str]:
    """Write the raw tables of `raw_dir` as known at `cutoff` to `out_dir`; return it and a fingerprint
    of the input and the cut."""
    remove_tree(out_dir)
    counts = []
    for table in RAW_TABLES:
        rows = read_parquet_folder(raw_dir / table.name, schema=arrow_schema(table))  # local or object storage
        kept = truncate_raw_table(rows, table, cutoff=cutoff)
        (out_dir / table.name).mkdir(parents=True, exist_ok=True)
        with (out_dir / table.name / "part-00000.parquet").open("wb") as out:  # out_dir may be on object storage
            pq.write_table(kept, out)
        counts.append(f"{table.name}={rows.num_rows}>{kept.num_rows}")
    fingerprint = hashlib.sha256(f"{raw_dir.resolve()}:{cutoff.isoformat()}:{','.join(counts)}".encode()).hexdigest()[:16]
    return out_dir, fingerprint


def build_eval_warehouse(settings: HomefeedSettings, *, raw_dir: Path, warehouse: Path, as_of: datetime,
                         fingerprint: str, rebuild: bool = False, selection: str | None = None) -> None:
    """Build every asset (or `selection`) from `raw_dir` into `warehouse` as of `as_of`, unless the
    warehouse's marker says it was built from the same input (`fingerprint`) already."""
    # Imported here: the run helper loads every asset, and the training set's asset imports this module.
    from orchestration.run import run_assets

    marker = warehouse / BUILD_MARKER
    fingerprint = fingerprint if selection is None else f"{fingerprint}:{selection}"
    built = marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint
    if rebuild or not built:
        run_settings = settings.model_copy(update={"warehouse": warehouse, "raw_input": raw_dir, "as_of": as_of})
        outcome = run_assets(run_settings, selection=selection, checks=False)
        if not outcome.success:
            failures = "; ".join(f"{f.step}: {f.message}" for f in outcome.failures)
            raise RuntimeError(f"building the warehouse in {warehouse} failed: {failures}")
        marker.write_text(json.dumps({"fingerprint": fingerprint, "as_of": as_of.isoformat(),
                                      "step_seconds": outcome.step_seconds}))
