"""Bronze ingestion: raw files -> contract-conforming rows + quarantined rows with the rule broken.

Pure DataFrame transforms; reading raw files and writing Delta happen at the edges
(`read_raw_table` here, the Dagster assets for writing). The order of checks is the order a row
is judged in, and a quarantined row carries the first rule it broke:

1. row rules: type casts, required values, allowed values, ranges, time bounds, self references,
   timestamp order within the row;
2. key uniqueness: the earliest row of a key wins, later duplicates are quarantined;
3. references to other tables (and to the table itself, iterated until stable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.contract import EARLIEST_VALID_TIME, RawTable, Reference

log = logging.getLogger(__name__)

SPARK_TYPES = {
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "string": T.StringType(),
    "timestamp": T.TimestampType(),
    "boolean": T.BooleanType(),
}

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("source_table", T.StringType(), False),
        T.StructField("rule", T.StringType(), False),
        T.StructField("detail", T.StringType(), True),
        T.StructField("record", T.StringType(), False),
    ]
)

_RULE = "_rule"
_DETAIL = "_detail"
_RECORD = "_record"


class RawInputError(ValueError):
    """A raw table cannot be read at all (missing folder, missing column, unreadable file)."""


def spark_schema(table: RawTable) -> T.StructType:
    return T.StructType([T.StructField(c.name, SPARK_TYPES[c.dtype], c.nullable) for c in table.columns])


@dataclass(frozen=True)
class RawFiles:
    format: str  # "parquet" or "csv"
    paths: tuple[Path, ...]


def find_raw_files(raw_dir: Path, table: RawTable) -> RawFiles:
    """The data files of one raw table, checked to be readable before Spark touches them."""
    folder = raw_dir / table.name
    if not folder.is_dir():
        raise RawInputError(f"{table.name}: raw folder {folder} does not exist")
    parquet = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))
    csv = sorted(p for p in folder.rglob("*.csv") if not p.name.startswith((".", "_")))
    if parquet and csv:
        raise RawInputError(f"{table.name}: {folder} mixes Parquet and CSV files; use one format")
    if not parquet and not csv:
        raise RawInputError(f"{table.name}: no .parquet or .csv files in {folder}")
    paths = parquet or csv
    for path in paths:
        if path.stat().st_size == 0:
            raise RawInputError(f"{table.name}: {path} is an empty file")
    if parquet:
        import pyarrow.parquet as pq

        for path in parquet:
            try:
                with path.open("rb") as handle:  # a local file or one on object storage
                    pq.read_metadata(handle)
            except Exception as exc:  # pyarrow raises several types for corrupt footers
                raise RawInputError(f"{table.name}: {path} is not a readable Parquet file: {exc}") from exc
    return RawFiles("parquet" if parquet else "csv", tuple(paths))


def read_raw_table(spark: SparkSession, raw_dir: Path, table: RawTable) -> DataFrame:
    """Read one raw table as found: Parquet with its own types, CSV as strings with a header."""
    files = find_raw_files(raw_dir, table)
    paths = [str(p) for p in files.paths]
    if files.format == "parquet":
        raw = spark.read.option("mergeSchema", "true").parquet(*paths)
    else:
        raw = spark.read.option("header", "true").option("mode", "PERMISSIVE").csv(paths)
    return check_columns_present(raw, table)


def check_columns_present(raw: DataFrame, table: RawTable) -> DataFrame:
    """Required columns must exist; a missing nullable column is added as nulls."""
    present = set(raw.columns)
    missing_required = [c.name for c in table.columns if c.name not in present and not c.nullable]
    if missing_required:
        raise RawInputError(f"{table.name}: missing required column(s) {missing_required}; found {sorted(present)}")
    for column in table.columns:
        if column.name not in present:
            raw = raw.withColumn(column.name, F.lit(None).cast(T.StringType()))
    return raw


# A row rule: (true where a row breaks it, the rule's name, the detail saying why).
_Check = tuple[SparkColumn, str, SparkColumn]


def _first_violation(checks: list[_Check]) -> tuple[SparkColumn, SparkColumn]:
    """(rule, detail) of the first check whose condition is true, else nulls."""
    rule = F.lit(None).cast(T.StringType())
    detail = F.lit(None).cast(T.StringType())
    for condition, name, why in reversed(checks):
        rule = F.when(condition, F.lit(name)).otherwise(rule)
        detail = F.when(condition, why).otherwise(detail)
    return rule, detail


def apply_row_rules(raw: DataFrame, *, table: RawTable, now: datetime) -> DataFrame:
    """Cast to the contract types and tag each row with the first row rule it breaks.

    Output: the contract columns, typed, plus `_rule`, `_detail` (null when the row is fine) and
    `_record`, the row as it arrived, as JSON (only computed for rows that end up quarantined).
    """
    source_types = {f.name: f.dataType for f in raw.schema.fields}
    raw_cols = {c.name: F.col(f"`{c.name}`") for c in table.columns}
    record = _row_json([raw_cols[c.name].cast("string").alias(c.name) for c in table.columns])
    typed = {c.name: _try_cast(raw_cols[c.name], source_types[c.name], c.dtype) for c in table.columns}

    checks = [
        *_type_checks(table, raw_cols=raw_cols, source_types=source_types, typed=typed),
        *_required_checks(table, typed=typed),
        *_value_checks(table, typed=typed, now=now),
        *_cross_column_checks(table, typed=typed),
    ]
    rule, detail = _first_violation(checks)
    return raw.select(
        *[typed[c.name].alias(c.name) for c in table.columns],
        rule.alias(_RULE),
        detail.alias(_DETAIL),
        record.alias(_RECORD),
    )


def _type_checks(
    table: RawTable,
    *,
    raw_cols: dict[str, SparkColumn],
    source_types: dict[str, T.DataType],
    typed: dict[str, SparkColumn],
) -> list[_Check]:
    """A non-blank value that cannot be read as its column's contract type."""
    checks: list[_Check] = []
    for c in table.columns:
        if source_types[c.name] == SPARK_TYPES[c.dtype]:
            continue
        value = raw_cols[c.name].cast("string")
        checks.append(
            (
                value.isNotNull() & (F.trim(value) != "") & typed[c.name].isNull(),
                f"invalid_type:{c.name}",
                F.concat(F.lit(f"cannot read as {c.dtype}: "), F.substring(value, 1, 80)),
            )
        )
    return checks


def _required_checks(table: RawTable, *, typed: dict[str, SparkColumn]) -> list[_Check]:
    """A null in a key column or another non-nullable column."""
    checks: list[_Check] = []
    for c in table.columns:
        if not c.nullable:
            name = "null_key" if c.name in table.key else "null_required"
            checks.append((typed[c.name].isNull(), f"{name}:{c.name}", F.lit(f"{c.name} is null")))
    return checks


def _value_checks(table: RawTable, *, typed: dict[str, SparkColumn], now: datetime) -> list[_Check]:
    """Per column, in column order: a value outside the allowed values, under the minimum, or a
    timestamp before EARLIEST_VALID_TIME or after `now`."""
    checks: list[_Check] = []
    for c in table.columns:
        value = typed[c.name]
        if c.allowed_values is not None:
            checks.append(
                (
                    value.isNotNull() & ~value.isin(*c.allowed_values),
                    f"invalid_value:{c.name}",
                    F.concat(F.lit(f"{c.name} not in {list(c.allowed_values)}: "), value),
                )
            )
        if c.min_value is not None:
            checks.append(
                (
                    value < F.lit(c.min_value),
                    f"out_of_range:{c.name}",
                    F.concat(F.lit(f"{c.name} < {c.min_value}: "), value.cast("string")),
                )
            )
        if c.dtype == "timestamp":
            checks.append(
                (
                    value < F.lit(EARLIEST_VALID_TIME),
                    f"timestamp_before_2006:{c.name}",
                    F.concat(F.lit(f"{c.name} before {EARLIEST_VALID_TIME.date()}: "), value.cast("string")),
                )
            )
            checks.append(
                (
                    value > F.lit(now),
                    f"timestamp_in_future:{c.name}",
                    F.concat(F.lit(f"{c.name} after {now.isoformat()}: "), value.cast("string")),
                )
            )
    return checks


def _cross_column_checks(table: RawTable, *, typed: dict[str, SparkColumn]) -> list[_Check]:
    """Two columns that must differ but are equal (a self reference), then two timestamps in the
    wrong order."""
    checks: list[_Check] = []
    for left, right in table.distinct_columns:
        checks.append(
            (
                typed[left] == typed[right],
                f"self_reference:{left}={right}",
                F.concat(F.lit(f"{left} equals {right}: "), typed[left].cast("string")),
            )
        )
    for later, earlier in table.ordered_timestamps:
        checks.append(
            (
                typed[later] < typed[earlier],
                f"timestamp_order:{later}<{earlier}",
                F.concat(F.lit(f"{later} precedes {earlier}: "), typed[later].cast("string")),
            )
        )
    return checks


def _row_json(columns: list[SparkColumn]) -> SparkColumn:
    """The row as a JSON object of strings, nulls kept, so a quarantined row can be inspected
    and replayed whichever stage quarantined it."""
    return F.to_json(F.struct(*columns), {"ignoreNullFields": "false"})


def _try_cast(column: SparkColumn, source: T.DataType, dtype: str) -> SparkColumn:
    """`column` as the contract type, or null where its value cannot be read as that type."""
    target = SPARK_TYPES[dtype]
    if source == target:
        return column
    if dtype == "timestamp":
        return column.try_cast(target)
    if dtype == "boolean":
        text = F.lower(F.trim(column.cast("string")))
        return (
            F.when(text.isin("true", "t", "1", "yes"), F.lit(True))
            .when(text.isin("false", "f", "0", "no"), F.lit(False))
            .otherwise(F.lit(None).cast(T.BooleanType()))
        )
    if dtype in ("bigint", "int"):
        if isinstance(source, T.IntegralType):
            return column.try_cast(target)
        # Integral values only: "12" and 12.0 are ids, "12.5" is not.
        as_decimal = column.cast("string").try_cast(T.DecimalType(38, 6))
        return F.when(as_decimal == F.floor(as_decimal), as_decimal.try_cast(target))
    return column.try_cast(target)


def split_quarantined(tagged: DataFrame, *, table: RawTable) -> tuple[DataFrame, DataFrame]:
    """(rows with no rule broken, quarantine rows) from a frame tagged by `apply_row_rules`."""
    if _RECORD in tagged.columns:
        record = F.col(_RECORD)
    else:
        record = _row_json([F.col(c).cast("string").alias(c) for c in table.column_names])
    valid = tagged.where(F.col(_RULE).isNull()).select(*table.column_names)
    quarantined = tagged.where(F.col(_RULE).isNotNull()).select(
        F.lit(table.name).alias("source_table"),
        F.col(_RULE).alias("rule"),
        F.col(_DETAIL).alias("detail"),
        record.alias("record"),
    )
    return valid, quarantined


def tag_duplicate_keys(valid: DataFrame, *, table: RawTable) -> DataFrame:
    """Tag all but the first row of each key (by `order_by`, then every column) as duplicates."""
    ordering = [F.col(c).asc_nulls_last() for c in (*table.order_by, *table.column_names)]
    window = Window.partitionBy(*[F.col(k) for k in table.key]).orderBy(*ordering)
    position = F.row_number().over(window)
    key_text = F.concat_ws(",", *[F.col(k).cast("string") for k in table.key])
    return valid.withColumn(_RULE, F.when(position > 1, F.lit("duplicate_key"))).withColumn(
        _DETAIL,
        F.when(position > 1, F.concat(F.lit(f"{list(table.key)} already seen: "), key_text)),
    )


def tag_dangling_references(valid: DataFrame, *, reference: Reference, target: DataFrame) -> DataFrame:
    """Tag rows whose non-null reference has no valid target row (or precedes it in time)."""
    columns = list(reference.columns)
    target_columns = list(reference.target_columns)
    keep = [F.col(c).alias(f"_ref_{i}") for i, c in enumerate(target_columns)]
    if reference.not_before is not None:
        keep.append(F.col(reference.not_before[1]).alias("_ref_time"))
    target_keys = target.select(*keep).dropDuplicates([f"_ref_{i}" for i in range(len(columns))])
    condition = [F.col(c) == F.col(f"_ref_{i}") for i, c in enumerate(columns)]
    joined = valid.join(target_keys, on=condition, how="left")
    has_reference = F.lit(True)
    for c in columns:
        has_reference = has_reference & F.col(c).isNotNull()
    missing = has_reference & F.col("_ref_0").isNull()
    shown = F.concat_ws(",", *[F.col(c).cast("string") for c in columns])
    rule = F.when(missing, F.lit(reference.rule))
    detail = F.when(missing, F.concat(F.lit(f"no {reference.target_table} row with {target_columns} = "), shown))
    if reference.not_before is not None:
        own_time = F.col(reference.not_before[0])
        too_early = has_reference & F.col("_ref_0").isNotNull() & (own_time < F.col("_ref_time"))
        rule = rule.when(too_early, F.lit(f"before_referenced_{reference.target_table}:{columns[0]}"))
        detail = detail.when(
            too_early,
            F.concat(
                F.lit(f"{reference.not_before[0]} precedes the referenced row's {reference.not_before[1]}: "), shown
            ),
        )
    helper_columns = [f"_ref_{i}" for i in range(len(columns))] + (
        ["_ref_time"] if reference.not_before is not None else []
    )
    return joined.withColumn(_RULE, rule).withColumn(_DETAIL, detail).drop(*helper_columns)


@dataclass
class IngestResult:
    """The valid rows (contract columns only) and the quarantined ones of one raw table."""

    valid: DataFrame
    quarantined: DataFrame


def ingest_raw_table(
    raw: DataFrame,
    *,
    table: RawTable,
    targets: dict[str, DataFrame],
    now: datetime,
) -> IngestResult:
    """Validate one raw table against the contract.

    `targets` holds the already-validated tables this one references (by name); a reference of
    the table to itself is checked against its own valid rows, repeatedly, until no row dangles.
    The returned frames are persisted; call `.unpersist()` on them when written.
    """
    tagged = apply_row_rules(raw, table=table, now=now)
    valid, quarantine_parts = split_quarantined(tagged, table=table)
    quarantine_parts = [quarantine_parts]

    deduped = tag_duplicate_keys(valid, table=table)
    valid, duplicates = split_quarantined(deduped, table=table)
    quarantine_parts.append(duplicates)

    for reference in (r for r in table.references if r.target_table != table.name):
        checked = tag_dangling_references(valid, reference=reference, target=targets[reference.target_table])
        valid, dangling = split_quarantined(checked, table=table)
        quarantine_parts.append(dangling)

    self_references = [r for r in table.references if r.target_table == table.name]
    if self_references:
        valid, self_dangling = drop_dangling_self_references(valid, table=table, references=self_references)
        quarantine_parts.extend(self_dangling)

    quarantined = quarantine_parts[0]
    for part in quarantine_parts[1:]:
        quarantined = quarantined.unionByName(part)
    return IngestResult(
        valid=valid if valid.is_cached else valid.persist(StorageLevel.MEMORY_AND_DISK),
        quarantined=quarantined.persist(StorageLevel.MEMORY_AND_DISK),
    )


def drop_dangling_self_references(
    valid: DataFrame, *, table: RawTable, references: list[Reference]
) -> tuple[DataFrame, list[DataFrame]]:
    """Check references of a table to itself against its own valid rows until none dangles.

    Each pass removes the rows whose target was removed by the pass before (a reply to a
    quarantined reply), so it ends after at most the depth of the longest broken chain.
    Returns the remaining rows (persisted) and the quarantined parts (persisted, materialized).
    """
    valid = valid.persist(StorageLevel.MEMORY_AND_DISK)
    valid_rows = valid.count()
    quarantined: list[DataFrame] = []
    passes = 0
    while True:
        passes += 1
        remaining, removed = valid, []
        for reference in references:
            checked = tag_dangling_references(remaining, reference=reference, target=valid)
            remaining, dangling = split_quarantined(checked, table=table)
            removed.append(dangling)
        remaining = remaining.persist(StorageLevel.MEMORY_AND_DISK)
        remaining_rows = remaining.count()
        if remaining_rows == valid_rows:
            remaining.unpersist()
            log.info("%s: self references stable after %d pass(es)", table.name, passes)
            return valid, quarantined
        for part in removed:
            quarantined.append(part.persist(StorageLevel.MEMORY_AND_DISK))
            quarantined[-1].count()  # materialize before the frame it derives from is released
        valid.unpersist()
        valid, valid_rows = remaining, remaining_rows


def count_by_rule(quarantined: DataFrame) -> dict[str, int]:
    rows = quarantined.groupBy("rule").count().collect()
    return {row["rule"]: int(row["count"]) for row in sorted(rows, key=lambda r: r["rule"])}
