"""The Spark frames a table's suite validates: the table's rows with one column per derived check,
and, where the spec asks for them, one row per group (its size) and one row per member of a
population (whether the table covers it).

A derived check's column is null on a good row and describes the violation on a bad one (the
offending key, say), so Great Expectations' `expect_column_values_to_be_null` reports the bad rows'
descriptions as its examples. Every derived column name starts with `_dq_`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from data_quality.specs import ContiguousRank, Coverage, GroupSize, InSet, Reference, Share, TableSpec

Reader = Callable[[str], DataFrame]  # table name -> its DataFrame

DERIVED_PREFIX = "_dq_"
GROUP_ROWS = "rows"
COVERED = "covered"


def reference_column(ref: Reference) -> str:
    return f"{DERIVED_PREFIX}ref_{ref.name}"


def rank_column(rank: ContiguousRank) -> str:
    return f"{DERIVED_PREFIX}rank_{rank.rank}"


def distinct_column(pair: tuple[str, str]) -> str:
    return f"{DERIVED_PREFIX}same_{pair[0]}_{pair[1]}"


def unknown_elements_column(in_set: InSet) -> str:
    return f"{DERIVED_PREFIX}unknown_{in_set.column}"


def share_column(share: Share) -> str:
    return f"{DERIVED_PREFIX}share_{share.name}"


def age_column(column: str) -> str:
    return f"{DERIVED_PREFIX}hours_old_{column}"


def duplicate_key_column(key: tuple[str, ...]) -> str:
    return f"{DERIVED_PREFIX}duplicate_{'_'.join(key)}"


def _described(columns: tuple[str, ...]) -> Column:
    """'user_id=1 tweet_id=2': a bad row's key, readable in a report."""
    return F.concat_ws(" ", *[F.concat(F.lit(f"{c}="), F.col(c).cast("string")) for c in columns])


# Up to this many distinct keys of a referenced table are sent to every executor (a few tens of MB)
# instead of shuffling the checked table: Spark's size estimate of a key set of 840K tweets is over
# its 10 MB broadcast threshold, so it shuffled all 91M candidate rows for that one join.
BROADCAST_MAX_KEYS = 2_000_000


def _with_reference(rows: DataFrame, ref: Reference, read: Reader) -> DataFrame:
    target = read(ref.table)
    if ref.target_filter:
        target = target.where(ref.target_filter)
    marker = f"{DERIVED_PREFIX}found"
    keys = target.select(*[F.col(t).alias(c) for c, t in zip(ref.columns, ref.target_columns)]).distinct()
    # The target's rows bound its distinct keys; the limit stops reading a big target (the 91M
    # candidates a feed refers to) early, where counting its distinct keys would aggregate them all.
    if target.limit(BROADCAST_MAX_KEYS + 1).count() <= BROADCAST_MAX_KEYS:
        keys = F.broadcast(keys)
    joined = rows.join(keys.withColumn(marker, F.lit(True)), on=list(ref.columns), how="left")
    checked = F.lit(True)
    for column in ref.columns:
        checked = checked & F.col(column).isNotNull()
    found = F.col(marker).isNotNull()
    bad = checked & (found if ref.forbidden else ~found)
    return joined.withColumn(reference_column(ref), F.when(bad, _described(ref.columns))).drop(marker)


def _with_rank_check(rows: DataFrame, rank: ContiguousRank) -> DataFrame:
    expected = F.row_number().over(Window.partitionBy(*rank.group).orderBy(F.col(rank.rank)))
    return rows.withColumn(
        rank_column(rank),
        F.when(
            F.col(rank.rank) != expected,
            F.concat(
                _described(rank.group),
                F.lit(f" {rank.rank}="),
                F.col(rank.rank).cast("string"),
                F.lit(" expected="),
                expected.cast("string"),
            ),
        ),
    )


def _with_key_check(rows: DataFrame, key: tuple[str, ...]) -> DataFrame:
    """Each row of a key held by more than one row, described. A window over the key, placed after
    the rank windows: when a rank's group is part of the key (a feed's user), Spark reuses that
    window's shuffle, where Great Expectations' own uniqueness check shuffled every row again."""
    copies = F.count(F.lit(1)).over(Window.partitionBy(*key))
    return rows.withColumn(duplicate_key_column(key), F.when(copies > 1, _described(key)))


def rows_view(table: DataFrame, spec: TableSpec, read: Reader, *, as_of: datetime) -> DataFrame:
    """The table with the derived check columns of `spec` (references, contiguous ranks, duplicate
    keys, distinct pairs, elements of array columns, shares, the age of the newest row)."""
    rows = table
    array_columns = {f.name for f in table.schema.fields if f.dataType.typeName() == "array"}
    for ref in spec.references:
        rows = _with_reference(rows, ref, read)
    for rank in spec.ranks:
        rows = _with_rank_check(rows, rank)
    if spec.key:
        rows = _with_key_check(rows, spec.key)
    for a, b in spec.distinct_columns:
        rows = rows.withColumn(distinct_column((a, b)), F.when(F.col(a) == F.col(b), _described((a, b))))
    for in_set in spec.sets:
        if in_set.column in array_columns:
            allowed = F.array(*[F.lit(v) for v in in_set.values])
            unknown = F.array_except(F.col(in_set.column), allowed)
            rows = rows.withColumn(
                unknown_elements_column(in_set), F.when(F.size(unknown) > 0, F.array_join(unknown, ","))
            )
    for share in spec.shares:
        rows = rows.withColumn(share_column(share), F.expr(share.expression).cast("double"))
    as_of_seconds = as_of.astimezone(UTC).timestamp()
    for fresh in spec.freshness:
        rows = rows.withColumn(
            age_column(fresh.column), (F.lit(as_of_seconds) - F.col(fresh.column).cast("double")) / 3600.0
        )
    return rows


def groups_view(table: DataFrame, group_size: GroupSize) -> DataFrame:
    """One row per group: its key and its number of rows (`rows`)."""
    return table.groupBy(*group_size.group).agg(F.count(F.lit(1)).alias(GROUP_ROWS))


def coverage_view(table: DataFrame, coverage: Coverage, read: Reader, *, as_of: datetime) -> DataFrame:
    """One row per member of the population: its key and whether the table has it (`covered`, 0/1)."""
    moment = as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    population = read(coverage.population_table).where(coverage.population_filter.format(as_of=moment))
    present = table.select(*coverage.columns).distinct().withColumn(COVERED, F.lit(1.0))
    return (
        population.select(*coverage.columns)
        .distinct()
        .join(present, on=list(coverage.columns), how="left")
        .withColumn(COVERED, F.coalesce(F.col(COVERED), F.lit(0.0)))
    )
