"""`homefeed sql` and `homefeed duckdb`: the analysts' way into the warehouse, through DuckDB."""

from __future__ import annotations

import argparse
import contextlib
import sys

from cli.options import with_warehouse
from cli.output import format_rows
from cli.settings import settings_from_args


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from jobs.duckdb_catalog import connect_warehouse, query_rows

    settings = settings_from_args(args)
    con = connect_warehouse(settings.tables_dir)
    try:
        columns, rows = query_rows(con, args.query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_rows(columns, rows, args.format))
    return 0


def cmd_duckdb(args: argparse.Namespace) -> int:
    from jobs.duckdb_catalog import connect_warehouse, find_delta_tables

    settings = settings_from_args(args)
    if args.db:
        con = connect_warehouse(settings.tables_dir, database=args.db)
        con.close()
        names = ", ".join(find_delta_tables(settings.tables_dir)) or "none"
        print(f"wrote {args.db}: views {names}, quarantine. Open it with any DuckDB client.")
        return 0
    con = connect_warehouse(settings.tables_dir)
    return _interactive_shell(con, sorted(find_delta_tables(settings.tables_dir)))


def _interactive_shell(con, table_names: list[str]) -> int:
    import duckdb

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    print(f"homefeed DuckDB shell. Views: {', '.join(table_names) or 'none'}.")
    print("End statements with ';'. .tables lists views, .quit leaves.")
    buffer: list[str] = []
    while True:
        try:
            line = input("homefeed> " if not buffer else "      ...> ")
        except EOFError:
            print()
            return 0
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            return 0
        if not buffer and stripped == ".tables":
            print("\n".join(table_names + ["quarantine"]))
            continue
        buffer.append(line)
        if not stripped.endswith(";"):
            continue
        statement, buffer = "\n".join(buffer), []
        try:
            result = con.execute(statement)
            if result.description:
                columns = [d[0] for d in result.description]
                print(format_rows(columns, result.fetchall(), "table"))
        except duckdb.Error as exc:
            print(f"error: {exc}")


def add_sql(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(sub.add_parser("sql", help="run a DuckDB query over the warehouse's tables"))
    p.add_argument("query")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_sql)


def add_duckdb(sub: argparse._SubParsersAction) -> None:
    p = with_warehouse(sub.add_parser("duckdb", help="interactive DuckDB shell (or --db FILE) over the tables"))
    p.add_argument("--db", help="write the views into this DuckDB database file instead of a shell")
    p.set_defaults(func=cmd_duckdb)
