"""Every Delta table of the warehouse as a DuckDB view under its asset name, offline.

DuckDB's `delta_scan` needs the `delta` extension, which is downloaded on first use; it is used
only when already installed. Otherwise each view reads the Parquet files of the table's current
Delta snapshot (listed by the deltalake package), which needs no network. Tables here never use
deletion vectors or column mapping, so those files are the table.

On object storage (an `s3a://` warehouse) DuckDB would need its `httpfs` extension, downloaded on
first use too; each view there scans the snapshot as an Arrow dataset that deltalake reads (with
the same AWS_* variables), so `homefeed sql` works offline against any S3-compatible store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from core.storage import is_delta_table, is_object_store

QUARANTINE_PREFIX = "quarantine_"
QUARANTINE_VIEW = "quarantine"


@dataclass(frozen=True)
class RegisteredTable:
    name: str
    path: Path
    how: str  # "delta_scan", "parquet_snapshot", "arrow_snapshot" (object storage) or "empty"


def find_delta_tables(tables_dir: Path) -> dict[str, Path]:
    if not tables_dir.is_dir():
        return {}
    return {p.name: p for p in sorted(tables_dir.iterdir()) if is_delta_table(p)}


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def delta_extension_installed(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'").fetchall()
    return bool(rows and rows[0][0])


def register_snapshot(con: duckdb.DuckDBPyConnection, name: str, path: Path, version: int | None = None) -> str:
    """`name`: a view over the Parquet files of the Delta table's current snapshot, or of `version`
    (an empty table if it has none)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(path), version=version)
    ident = _quote_identifier(name)
    if is_object_store(path):
        arrow_view = f"__arrow_{name}"
        con.register(arrow_view, table.to_pyarrow_dataset())
        con.execute(f"CREATE OR REPLACE VIEW {ident} AS SELECT * FROM {_quote_identifier(arrow_view)}")
        return "arrow_snapshot"
    files = table.file_uris()
    if not files:
        empty = table.to_pyarrow_table()  # noqa: F841 - read by DuckDB's replacement scan below
        con.execute(f"CREATE OR REPLACE TABLE {ident} AS SELECT * FROM empty")
        return "empty"
    file_list = ", ".join(_quote_literal(f) for f in files)
    con.execute(
        f"CREATE OR REPLACE VIEW {ident} AS SELECT * FROM read_parquet([{file_list}], hive_partitioning = true)"
    )
    return "parquet_snapshot"


def register_warehouse(con: duckdb.DuckDBPyConnection, tables_dir: Path) -> list[RegisteredTable]:
    """Create one view per Delta table, plus `quarantine`: every quarantine table in one."""
    use_delta_scan = delta_extension_installed(con)
    if use_delta_scan:
        con.execute("LOAD delta")
    registered = []
    for name, path in find_delta_tables(tables_dir).items():
        if use_delta_scan and not is_object_store(path):
            con.execute(
                f"CREATE OR REPLACE VIEW {_quote_identifier(name)} AS "
                f"SELECT * FROM delta_scan({_quote_literal(str(path))})"
            )
            how = "delta_scan"
        else:
            how = register_snapshot(con, name, path)
        registered.append(RegisteredTable(name, path, how))
    quarantines = [t.name for t in registered if t.name.startswith(QUARANTINE_PREFIX)]
    if quarantines:
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {_quote_identifier(q)}" for q in quarantines)
        con.execute(f"CREATE OR REPLACE VIEW {QUARANTINE_VIEW} AS {union}")
    return registered


def connect_warehouse(tables_dir: Path, database: str | Path = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(database))
    # Spark's INT96 timestamps arrive as TIMESTAMP without a zone, in UTC; compare and print them in
    # UTC like the Spark session, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    register_warehouse(con, tables_dir)
    return con


def query_rows(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    result = con.execute(sql)
    columns = [d[0] for d in result.description] if result.description else []
    return columns, result.fetchall()
