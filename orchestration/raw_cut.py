"""The raw input as known at a moment: rows stamped later dropped, later deletions undone."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from core.contract import RAW_TABLES, arrow_schema
from core.storage import read_parquet_folder, remove_tree
from jobs.candidate_eval import truncate_raw_table


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
    fingerprint = hashlib.sha256(f"{raw_dir.resolve()}:{cutoff.isoformat()}:{','.join(counts)}".encode()).hexdigest()[
        :16
    ]
    return out_dir, fingerprint
