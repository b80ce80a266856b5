"""How the commands print rows: query results as a table, CSV or JSON, and row counts per table."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def format_rows(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], indent=None)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_jsonable(v) for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(_jsonable(v)) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def print_row_counts(title: str, rows_per_table: dict[str, int]) -> None:
    print(title)
    width = max(len(name) for name in rows_per_table)
    for name, rows in rows_per_table.items():
        print(f"  {name:<{width}}  {rows:>12,}")
