"""Great Expectations suites built in code from the table specs (`data_quality.specs`).

A table gets up to three suites, each over one of the frames of `data_quality.views`: `rows` (the
table with its derived check columns), `groups` (one row per group, for the mean group size) and
`coverage` (one row per member of a population). Every expectation carries a `description` that
says in words what it checks; reports and Dagster metadata quote it.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from core.quality_bounds import QualityBounds
from data_quality.specs import TableSpec
from data_quality.views import (
    COVERED,
    GROUP_ROWS,
    age_column,
    distinct_column,
    duplicate_key_column,
    rank_column,
    reference_column,
    share_column,
    unknown_elements_column,
)

# Spark's simpleString -> the pyspark.sql.types class name GX's type check takes. Arrays are
# checked as arrays; their element type is part of the schema check (`schema_mismatches`).
_GX_TYPES = {
    "bigint": "LongType",
    "int": "IntegerType",
    "double": "DoubleType",
    "float": "FloatType",
    "boolean": "BooleanType",
    "string": "StringType",
    "timestamp": "TimestampType",
}


def gx_type(dtype: str) -> str:
    return "ArrayType" if dtype.startswith("array<") else _GX_TYPES[dtype]


def rows_suite(
    spec: TableSpec, bounds: QualityBounds, *, derived: list[str], empty: bool = False
) -> gx.ExpectationSuite:
    """The `rows` suite over the table plus its `derived` check columns (`views.rows_view`); for an
    `empty` table, without the checks of means and minima (undefined over no rows: the row count says
    whether the table may be empty)."""
    expectations = [
        *_table_expectations(spec, bounds, derived=derived),
        *_column_expectations(spec),
        *_value_expectations(spec),
        *_relation_expectations(spec),
    ]
    if not empty:
        expectations += _aggregate_expectations(spec, bounds)
    suite = gx.ExpectationSuite(name=f"{spec.name}.rows")
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def _table_expectations(spec: TableSpec, bounds: QualityBounds, *, derived: list[str]) -> list[gxe.Expectation]:
    """Exactly the declared (and derived) columns; at least min_rows rows where the table may not be empty."""
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*spec.column_names, *derived],
            exact_match=True,
            description=f"{spec.name} has exactly its declared columns",
        )
    ]
    if spec.non_empty:
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=int(bounds.min_rows),
                description=f"{spec.name} has at least {bounds.min_rows:g} rows (min_rows)",
            )
        )
    return expectations


def _column_expectations(spec: TableSpec) -> list[gxe.Expectation]:
    """Each column's type and, where not nullable, no nulls; then the key's uniqueness."""
    expectations: list[gxe.Expectation] = []
    for column in spec.columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeOfType(
                column=column.name, type_=gx_type(column.dtype), description=f"{column.name} is {column.dtype}"
            )
        )
        if not column.nullable:
            expectations.append(
                gxe.ExpectColumnValuesToNotBeNull(column=column.name, description=f"{column.name} is never null")
            )
    if spec.key:
        key = spec.key[0] if len(spec.key) == 1 else f"({', '.join(spec.key)})"
        expectations.append(_null(duplicate_key_column(spec.key), f"{key} is unique"))
    return expectations


def _value_expectations(spec: TableSpec) -> list[gxe.Expectation]:
    """Values within their bounds, then values (or every element of an array) in their allowed set."""
    array_columns = {c.name for c in spec.columns if c.dtype.startswith("array<")}
    expectations: list[gxe.Expectation] = []
    for bound in spec.bounds:
        rows = "" if bound.mostly == 1.0 else f" for at least {bound.mostly:.1%} of rows"
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=bound.column,
                min_value=bound.min,
                max_value=bound.max,
                mostly=bound.mostly,
                description=f"{bound.column} within [{_open(bound.min)}, {_open(bound.max)}]{rows}",
            )
        )
    for in_set in spec.sets:
        values = ", ".join(map(str, in_set.values))
        if in_set.column in array_columns:
            expectations.append(
                _null(unknown_elements_column(in_set), f"every element of {in_set.column} is one of {values}")
            )
        else:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=in_set.column,
                    value_set=list(in_set.values),
                    description=f"{in_set.column} is one of {values}",
                )
            )
    return expectations


def _relation_expectations(spec: TableSpec) -> list[gxe.Expectation]:
    """References to other tables (or their absence), ranks counting 1, 2, 3... within their group,
    and pairs of columns that must differ."""
    expectations: list[gxe.Expectation] = []
    for ref in spec.references:
        target = f"{ref.table}({', '.join(ref.target_columns)})" + (
            f" where {ref.target_filter}" if ref.target_filter else ""
        )
        verb = "matches no row of" if ref.forbidden else "exists in"
        expectations.append(_null(reference_column(ref), f"({', '.join(ref.columns)}) {verb} {target}"))
    for rank in spec.ranks:
        expectations.append(
            _null(rank_column(rank), f"{rank.rank} counts 1, 2, 3... within each ({', '.join(rank.group)})")
        )
    for a, b in spec.distinct_columns:
        expectations.append(_null(distinct_column((a, b)), f"{a} differs from {b}"))
    return expectations


def _aggregate_expectations(spec: TableSpec, bounds: QualityBounds) -> list[gxe.Expectation]:
    """The means and minima over all rows: shares of rows within their bounds, then freshness."""
    expectations: list[gxe.Expectation] = []
    for share in spec.shares:
        low, high = bounds.pair(share.bound)
        expectations.append(
            gxe.ExpectColumnMeanToBeBetween(
                column=share_column(share),
                min_value=low,
                max_value=high,
                description=f"the share of rows where {share.expression} is within "
                f"[{_open(low)}, {_open(high)}] ({share.bound})",
            )
        )
    for fresh in spec.freshness:
        hours = bounds.pair(fresh.bound)[0]
        expectations.append(
            gxe.ExpectColumnMinToBeBetween(
                column=age_column(fresh.column),
                max_value=hours,
                description=f"the newest {fresh.column} is at most {hours:g} h before the build time ({fresh.bound})",
            )
        )
    return expectations


def groups_suite(spec: TableSpec, index: int, bounds: QualityBounds) -> gx.ExpectationSuite:
    group_size = spec.group_sizes[index]
    low, high = bounds.pair(group_size.bound)
    suite = gx.ExpectationSuite(name=f"{spec.name}.groups.{'_'.join(group_size.group)}")
    suite.add_expectation(
        gxe.ExpectColumnMeanToBeBetween(
            column=GROUP_ROWS,
            min_value=low,
            max_value=high,
            description=f"the mean rows per ({', '.join(group_size.group)}) is within [{_open(low)}, {_open(high)}] "
            f"({group_size.bound})",
        )
    )
    return suite


def coverage_suite(spec: TableSpec, index: int, bounds: QualityBounds) -> gx.ExpectationSuite:
    coverage = spec.coverage[index]
    low = bounds.pair(coverage.bound)[0]
    suite = gx.ExpectationSuite(name=f"{spec.name}.coverage.{coverage.name}")
    suite.add_expectation(
        gxe.ExpectColumnMeanToBeBetween(
            column=COVERED,
            min_value=low,
            description=f"at least {low:g} of {coverage.population_table} where {coverage.population_filter} "
            f"(distinct {', '.join(coverage.columns)}) is in {spec.name} ({coverage.name}, {coverage.bound})",
        )
    )
    return suite


def _null(column: str, description: str) -> gxe.ExpectColumnValuesToBeNull:
    return gxe.ExpectColumnValuesToBeNull(column=column, description=description)


def _open(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
