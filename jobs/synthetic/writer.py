"""Deterministic Parquet output: contract schemas, fixed row groups/compression, rolling parts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.contract import RAW_TABLES_BY_NAME, arrow_schema
from jobs.synthetic.config import WorldConfig

TS = pa.timestamp("us", tz="UTC")


def ts(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64), type=TS)


def opt_int64(values: np.ndarray) -> pa.Array:
    """int64 with negatives as nulls."""
    v = np.asarray(values, dtype=np.int64)
    return pa.array(v, type=pa.int64(), mask=v < 0)


def opt_ts(values: np.ndarray) -> pa.Array:
    v = np.asarray(values, dtype=np.int64)
    return pa.array(v, type=TS, mask=v < 0)


def codes_to_strings(names, codes: np.ndarray) -> pa.Array:
    """Strings from small-int codes; negative codes are null."""
    c = np.asarray(codes, dtype=np.int32)
    return pa.array(list(names), type=pa.string()).take(pa.array(c, mask=c < 0))


def raw_table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    """A table with exactly the contract schema of `name`."""
    schema = arrow_schema(RAW_TABLES_BY_NAME[name])
    arrays = [columns[f.name] for f in schema]
    for f, a in zip(schema, arrays):
        if a.type != f.type:
            raise TypeError(f"{name}.{f.name}: {a.type} != {f.type}")
        if not f.nullable and a.null_count:
            raise ValueError(f"{name}.{f.name}: {a.null_count} nulls in a non-null column")
    return pa.Table.from_arrays(arrays, schema=schema)


class PartWriter:
    """Writes <directory>/part-00000.parquet, part-00001.parquet, ... (a new part every
    max_rows_per_file rows) with deterministic settings; always leaves at least one part."""

    def __init__(self, directory: Path, schema: pa.Schema, cfg: WorldConfig) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.cfg = cfg
        self.part = 0
        self.rows_in_part = 0
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def _open(self) -> pq.ParquetWriter:
        path = self.directory / f"part-{self.part:05d}.parquet"
        return pq.ParquetWriter(
            path,
            self.schema,
            compression=self.cfg.compression,
            compression_level=self.cfg.compression_level,
            use_dictionary=True,
            write_statistics=True,
            version="2.6",
        )

    def write(self, table: pa.Table) -> None:
        if not table.schema.equals(self.schema):
            raise TypeError(f"schema mismatch:\n{table.schema}\n!=\n{self.schema}")
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._writer = self._open()
            room = self.cfg.max_rows_per_file - self.rows_in_part
            chunk = table.slice(offset, room)
            self._writer.write_table(chunk, row_group_size=self.cfg.row_group_size)
            offset += chunk.num_rows
            self.rows_in_part += chunk.num_rows
            self.rows += chunk.num_rows
            if self.rows_in_part >= self.cfg.max_rows_per_file:
                self._writer.close()
                self._writer = None
                self.part += 1
                self.rows_in_part = 0

    def close(self) -> int:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self.rows == 0:
            self._open().close()  # an empty part with the schema
        return self.rows


def write_single(path: Path, table: pa.Table, cfg: WorldConfig) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        path,
        compression=cfg.compression,
        compression_level=cfg.compression_level,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        row_group_size=cfg.row_group_size,
    )
    return table.num_rows


def reset_dir(path: Path) -> None:
    """Remove a directory this generator owns (a table folder or truth/) before rewriting it."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
