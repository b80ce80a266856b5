"""The pair-feature kernel (`features.pair_kernel`) on Spark rows that carry both sides: each row a
(user, tweet) pair joined with its user side and its tweet side columns, as `user_tweet_features`
and the training set build them. The kernel runs on whole Arrow batches (`mapInArrow`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from features.pair_kernel import PAIR_FEATURE_TYPES, TWEET_SIDE_COLUMNS, USER_SIDE_COLUMNS, pair_features

SIDE_COLUMNS = frozenset((*USER_SIDE_COLUMNS, *TWEET_SIDE_COLUMNS))
_SPARK_TYPES = {pa.float64(): T.DoubleType(), pa.bool_(): T.BooleanType()}


def with_pair_features(
    rows: DataFrame, *, overall_rate: float | None, names: Sequence[str] = tuple(PAIR_FEATURE_TYPES)
) -> DataFrame:
    """`rows` with their side columns (`SIDE_COLUMNS`, any absent counting as null) replaced by the
    pair features `names` (nullable; `pair_features` says when each is null)."""
    kept = [name for name in rows.columns if name not in SIDE_COLUMNS]
    schema = T.StructType(
        [rows.schema[name] for name in kept]
        + [T.StructField(name, _SPARK_TYPES[PAIR_FEATURE_TYPES[name]], True) for name in names]
    )
    wanted = list(names)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            aligned = np.arange(batch.num_rows)
            values = pair_features(table, table, aligned, aligned, overall_rate=overall_rate)
            yield pa.RecordBatch.from_arrays(
                [batch.column(name) for name in kept] + [values[name] for name in wanted], names=kept + wanted
            )

    return rows.mapInArrow(run, schema)
