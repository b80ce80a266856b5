"""Feature vectors: the registry's features of several entities side by side, under their
qualified names (`<entity>__<name>`), with declared defaults where a table has no row. The
training set and batch scoring assemble their rows with these same two functions."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.registry import Feature, features_for, keys_of_asset


def qualified(table: DataFrame, asset: str, entity: str) -> DataFrame:
    """A feature table's keys, then its features renamed `<entity>__<name>`."""
    return table.select(*keys_of_asset(asset), *[F.col(f.name).alias(f.qualified_name) for f in features_for(entity)])


def with_default(feature: Feature) -> Column:
    """The feature's qualified column cast to its type, null (no row joined) as its default."""
    name = feature.qualified_name
    return F.coalesce(F.col(name).cast(feature.dtype), F.lit(feature.default).cast(feature.dtype)).alias(name)
