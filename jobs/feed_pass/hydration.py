"""Feature hydration inside the per-user pass: the registry's features of (user, tweet) pairs read
from the per-entity tables by position, missing rows at their declared defaults, as an Arrow table
of qualified columns (the same columns `jobs.ranking.join_features` joins in Spark, and that
`models.ranker_features.feature_matrix` turns into a model's input).

Where each entity's rows are: the user's in the block's own request rows (one per user); the
(user, author) rows as a list per user in the same request rows; the author's and the tweet's in
tables collected once and shipped with the task (`KeyedTable`); the (user, tweet) pair features are
computed by the pair-feature kernel (`features.pair_kernel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_type

from features.pair_kernel import list_entries, lookup
from features.registry import FEATURES, SPARK_TYPES, Feature
from jobs.candidates.kernels import lookup as lookup_sorted

ARROW_TYPES = {dtype: to_arrow_type(spark_type) for dtype, spark_type in SPARK_TYPES.items()}
BY_NAME: dict[str, Feature] = {f.qualified_name: f for f in FEATURES}
# The per-user list of (author_id, user_author features) in a request row.
USER_AUTHOR_ROWS = "_user_author_rows"


def features_named(names: Sequence[str], entity: str) -> list[Feature]:
    """The features among `names` (qualified) of `entity`, in `names` order, each once."""
    return [BY_NAME[name] for name in dict.fromkeys(names) if BY_NAME[name].entity == entity]


def _with_default(values: pa.Array, present: np.ndarray, feature: Feature) -> pa.Array:
    """`values` cast to the feature's type, where `present` is False (or the value null) its default."""
    typed = pc.cast(values, ARROW_TYPES[feature.dtype])
    default = pa.scalar(feature.default, ARROW_TYPES[feature.dtype])
    return pc.fill_null(pc.if_else(pa.array(present), typed, pa.nulls(len(typed), typed.type)), default)


def taken(columns: pa.Table, rows: np.ndarray, features: Sequence[Feature]) -> dict[str, pa.Array]:
    """Each feature's column of `columns` (qualified names) at `rows` (-1: no row, the default)."""
    present = rows >= 0
    safe = pa.array(np.where(present, rows, 0))
    out = {}
    for feature in features:
        name = feature.qualified_name
        if columns.num_rows == 0 or name not in columns.column_names:
            out[name] = pa.array(np.full(len(rows), feature.default), type=ARROW_TYPES[feature.dtype])
        else:
            out[name] = _with_default(columns.column(name).take(safe), present, feature)
    return out


@dataclass(frozen=True)
class KeyedTable:
    """Rows of one entity, by key: `keys` sorted ascending, `columns` aligned with them."""

    keys: np.ndarray
    columns: pa.Table

    @classmethod
    def of(cls, table: pa.Table, key: str) -> KeyedTable:
        table = table.sort_by(key)
        return cls(keys=table.column(key).to_numpy().astype(np.int64), columns=table.drop_columns([key]))

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Each key's row, -1 where there is none."""
        rows = np.full(len(keys), -1, dtype=np.int64)
        positions, found = lookup_sorted(self.keys, keys)
        rows[found] = positions
        return rows


def user_author_columns(requests: pa.Table, user_rows: np.ndarray, author_ids: np.ndarray) -> tuple:
    """(the flattened USER_AUTHOR_ROWS entries of the block's `requests` as a table, each pair's
    entry in it or -1 where the user has no row for that author)."""
    column = requests.column(USER_AUTHOR_ROWS).combine_chunks()
    offsets, keys, _ = list_entries(column, "author_id")
    entries = pc.list_flatten(column)  # the same entries, in the same order
    table = pa.table({field.name: entries.field(field.name) for field in column.type.value_type})
    rows = lookup(offsets, keys.to_numpy(zero_copy_only=False).astype(np.int64), user_rows, author_ids)
    return table, rows
