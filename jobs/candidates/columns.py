"""Spark column expressions the candidates job shares: time windows and conditional counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F


def micros(moment: datetime) -> int:
    """Microseconds since the epoch."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def age_hours(column: str, as_of: datetime) -> Column:
    """Hours from the timestamp `column` to as_of."""
    return (F.lit(micros(as_of)) - F.unix_micros(F.col(column))) / F.lit(3.6e9)


def between(column: str, start: datetime, end: datetime) -> Column:
    """`column` in [start, end]."""
    return (F.col(column) >= F.lit(start)) & (F.col(column) <= F.lit(end))


def count_where(condition: Column) -> Column:
    """An aggregate: how many rows satisfy `condition` (a long)."""
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")
