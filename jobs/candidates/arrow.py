"""Arrow arrays built straight from numpy buffers (the per-user kernel's output columns)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def nullable_array(values: np.ndarray, valid: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A primitive Arrow array from numpy values (of the type's width) and a validity mask."""
    values = np.ascontiguousarray(values)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(
        arrow_type,
        values.shape[0],
        [pa.py_buffer(bitmap), pa.py_buffer(values)],
        null_count=int(values.shape[0] - np.count_nonzero(valid)),
    )


def list_array(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    """A list array: list i is values[offsets[i]:offsets[i + 1]]."""
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32), type=pa.int32()), values)
