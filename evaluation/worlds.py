"""What the evaluations share: a generated world's end, and reading a table of an evaluation's warehouse."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable


def world_end_time(world_dir: Path) -> datetime:
    metadata = json.loads((world_dir / "truth" / "metadata.json").read_text())
    return datetime.fromisoformat(metadata["config"]["end_time"])


def read_warehouse_table(warehouse: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    return DeltaTable(str(warehouse / "tables" / name)).to_pyarrow_table(columns=columns)
