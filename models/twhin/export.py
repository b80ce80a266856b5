"""Arrow I/O for TwHIN: reading the training tables from Delta, writing embeddings back to Delta.

Tables written (each replaced in one Delta commit by `deltalake.write_deltalake`, readable by Spark,
deltalake and DuckDB; deltalake writes no deletion vectors):

- `twhin_user_embeddings(user_id bigint, embedding array<float>)`
- `twhin_tweet_embeddings(tweet_id bigint, embedding array<float>)`
- `twhin_relations(relation string, lhs_type string, rhs_type string, edges bigint, translation array<float>)`
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from core.storage import is_delta_table
from models.twhin.graph import TWEET, USER
from models.twhin.train import TwhinEmbeddings

USER_EMBEDDINGS_TABLE = "twhin_user_embeddings"
TWEET_EMBEDDINGS_TABLE = "twhin_tweet_embeddings"
RELATIONS_TABLE = "twhin_relations"
ID_COLUMNS = {USER: "user_id", TWEET: "tweet_id"}
TABLE_NODE_TYPES = {USER_EMBEDDINGS_TABLE: USER, TWEET_EMBEDDINGS_TABLE: TWEET}

# The columns training reads from each bronze table.
INPUT_COLUMNS = {
    "follows": ["follower_id", "followee_id"],
    "engagements": ["user_id", "tweet_id", "action"],
    "tweets": ["tweet_id", "author_id", "in_reply_to_tweet_id", "retweet_of_tweet_id"],
}
TRAINING_ACTIONS = ("like", "retweet", "reply")


def read_training_tables(paths: dict[str, Path]) -> dict[str, pa.Table]:
    """The columns TwHIN trains on, from the Delta tables `paths["follows" | "engagements" | "tweets"]`
    (deltalake, no Spark); engagements are filtered to the training actions while reading."""
    from deltalake import DeltaTable

    tables = {}
    for name, columns in INPUT_COLUMNS.items():
        path = paths[name]
        if not is_delta_table(path):
            raise FileNotFoundError(f"no Delta table at {path}; materialize `{name}` first")
        filters = [("action", "in", list(TRAINING_ACTIONS))] if name == "engagements" else None
        tables[name] = DeltaTable(str(path)).to_pyarrow_table(columns=columns, filters=filters)
    return tables


def vectors_array(matrix: np.ndarray) -> pa.ListArray:
    """A (n, d) float matrix as a list<float> column (Delta/Spark `array<float>`)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int64), type=pa.int64())
    return pa.LargeListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.float32())).cast(
        pa.list_(pa.float32())
    )


def embeddings_table(ids: np.ndarray, matrix: np.ndarray, id_column: str) -> pa.Table:
    return pa.table(
        {id_column: pa.array(np.asarray(ids, dtype=np.int64), type=pa.int64()), "embedding": vectors_array(matrix)}
    )


def relations_table(result: TwhinEmbeddings) -> pa.Table:
    return pa.table(
        {
            "relation": pa.array([r.name for r in result.relations], type=pa.string()),
            "lhs_type": pa.array([r.lhs_type for r in result.relations], type=pa.string()),
            "rhs_type": pa.array([r.rhs_type for r in result.relations], type=pa.string()),
            "edges": pa.array([result.edges_per_relation.get(r.name, 0) for r in result.relations], type=pa.int64()),
            "translation": vectors_array(result.translations),
        }
    )


def output_tables(result: TwhinEmbeddings) -> dict[str, pa.Table]:
    return {
        USER_EMBEDDINGS_TABLE: embeddings_table(result.ids(USER), result.embeddings(USER), ID_COLUMNS[USER]),
        TWEET_EMBEDDINGS_TABLE: embeddings_table(result.ids(TWEET), result.embeddings(TWEET), ID_COLUMNS[TWEET]),
        RELATIONS_TABLE: relations_table(result),
    }


def write_delta(path: Path, table: pa.Table) -> None:
    """Replace the Delta table at `path` with `table` in one commit (schema replaced too)."""
    from deltalake import write_deltalake

    path.parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), table, mode="overwrite", schema_mode="overwrite")


def write_twhin_tables(result: TwhinEmbeddings, paths: dict[str, Path]) -> dict[str, int]:
    """Write the three TwHIN tables to `paths[table name]`; returns rows per table."""
    rows = {}
    for name, table in output_tables(result).items():
        write_delta(paths[name], table)
        rows[name] = table.num_rows
    return rows


def table_to_matrix(table: pa.Table, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted ascending, (n, d) float32 matrix) of a table with `id_column` and `embedding`."""
    table = table.sort_by(id_column)
    ids = np.asarray(table[id_column].to_numpy(), dtype=np.int64)
    vectors = table["embedding"].combine_chunks()
    if ids.shape[0] == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    flat = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return ids, flat.reshape(ids.shape[0], -1)


def read_embeddings(path: Path, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """An embeddings Delta table as (ids, matrix), via deltalake."""
    from deltalake import DeltaTable

    return table_to_matrix(DeltaTable(str(path)).to_pyarrow_table(columns=[id_column, "embedding"]), id_column)


def read_translations(path: Path) -> dict[str, np.ndarray]:
    """The `twhin_relations` Delta table as {relation: translation vector}."""
    from deltalake import DeltaTable

    table = DeltaTable(str(path)).to_pyarrow_table(columns=["relation", "translation"])
    return {
        name: np.asarray(vector, dtype=np.float32)
        for name, vector in zip(table["relation"].to_pylist(), table["translation"].to_pylist())
    }
