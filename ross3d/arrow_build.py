"""Arrow arrays and tables built from their buffers, never through `pa.array` or `pa.Table.from_pylist`: the first
call of either imports pandas (about 0.26 s per process, the largest one-time cost of a prep worker) only to ask
whether the values are pandas objects.

Types: int32, int64, float32, float64, bool, string, binary and (fixed-size) lists of these; a value of None (or a
missing row key) is null, as with `from_pylist`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int32(): np.int32, pa.int64(): np.int64, pa.float32(): np.float32, pa.float64(): np.float64}


def _bits(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _offsets(lengths: Sequence[int]) -> pa.Buffer:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.py_buffer(offsets)


def arrow_array(values: Sequence, type: pa.DataType) -> pa.Array:
    """`values` (a list, None for null, or a numpy array) as an Arrow array of `type`."""
    n = len(values)
    present = None if isinstance(values, np.ndarray) else np.fromiter((v is not None for v in values), bool, n)
    nulls = 0 if present is None else n - int(present.sum())
    validity = _bits(present) if nulls else None
    if nulls:  # a null slot holds a placeholder: zeros, False, empty bytes, an empty or zero-filled list
        filler = [0] * type.list_size if pa.types.is_fixed_size_list(type) else \
            [] if pa.types.is_list(type) else b"" if pa.types.is_binary(type) else "" if pa.types.is_string(type) else 0
        values = [filler if v is None else v for v in values]
    if type in _NUMPY:
        data = np.ascontiguousarray(values, _NUMPY[type])
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(data)], nulls)
    if pa.types.is_boolean(type):
        return pa.Array.from_buffers(type, n, [validity, _bits(np.asarray(values, bool))], nulls)
    if pa.types.is_string(type) or pa.types.is_binary(type):
        raw = [v.encode() for v in values] if pa.types.is_string(type) else values
        data = pa.py_buffer(b"".join(raw))
        return pa.Array.from_buffers(type, n, [validity, _offsets([len(v) for v in raw]), data], nulls)
    if pa.types.is_fixed_size_list(type):
        flat = np.asarray(values).reshape(-1) if type.value_type in _NUMPY else [x for v in values for x in v]
        if len(flat) != n * type.list_size:
            raise ValueError(f"{type} takes {type.list_size} values per row, got {len(flat)} for {n} rows")
        return pa.Array.from_buffers(type, n, [validity], nulls, children=[arrow_array(flat, type.value_type)])
    if pa.types.is_list(type):
        child = arrow_array([x for v in values for x in v], type.value_type)
        return pa.Array.from_buffers(type, n, [validity, _offsets([len(v) for v in values])], nulls, children=[child])
    raise TypeError(f"no Arrow builder for {type}")


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """`pa.Table.from_pylist(rows, schema=schema)`: a key missing from a row is null."""
    return pa.Table.from_arrays([arrow_array([row.get(f.name) for row in rows], f.type) for f in schema],
                                schema=schema)
