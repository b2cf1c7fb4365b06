"""ross3d.arrow_build: Arrow columns from buffers hold the given values (nulls where None or missing) and never
import pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ross3d.arrow_build import arrow_array, table_from_rows

SCHEMA = pa.schema([
    ("name", pa.string()), ("count", pa.int32()), ("flag", pa.bool_()), ("blob", pa.binary()),
    ("pose", pa.list_(pa.float32(), 3)), ("tags", pa.list_(pa.string())), ("score", pa.float64()),
])


def test_rows_round_trip_through_parquet_with_nulls(tmp_path):
    rows = [
        {"name": "café", "count": -7, "flag": True, "blob": b"\xff\xd8\x00", "pose": [0.5, -1.25, 3.0],
         "tags": ["a", "bc"], "score": 2.5},
        {"name": "b", "count": 2 ** 31 - 1, "flag": False, "blob": b"", "pose": [1.0, 2.0, 4.0], "tags": [],
         "score": None},
        {"name": None, "flag": None, "tags": None},  # missing keys and None: null
    ]
    pq.write_table(table_from_rows(rows, SCHEMA), tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema == SCHEMA
    assert back.to_pylist() == [
        rows[0], rows[1],
        {"name": None, "count": None, "flag": None, "blob": None, "pose": None, "tags": None, "score": None},
    ]
    assert [back.column(f.name).null_count for f in SCHEMA] == [1, 1, 1, 1, 1, 1, 2]


def test_numpy_columns_and_bit_packing():
    flags = arrow_array([True, False, False, True, True, False, False, False, True], pa.bool_())
    assert flags.to_pylist() == [True, False, False, True, True, False, False, False, True]
    assert flags.buffers()[1].to_pybytes()[:2] == bytes([0b00011001, 0b00000001])  # LSB first, as Arrow lays out
    poses = arrow_array(np.arange(6, dtype=np.float32).reshape(2, 3), pa.list_(pa.float32(), 3))
    assert poses.to_pylist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert arrow_array(["ab", "", "xyz"], pa.string()).buffers()[1].to_pybytes() == \
        np.array([0, 2, 2, 5], np.int32).tobytes()  # offsets


def test_wrong_list_size_and_unknown_type_raise():
    with pytest.raises(ValueError, match="3 values per row"):
        arrow_array([[1.0, 2.0]], pa.list_(pa.float32(), 3))
    with pytest.raises(TypeError, match="no Arrow builder"):
        arrow_array([1], pa.uint8())


def test_pandas_is_never_imported():
    code = ("import sys, numpy as np\nfrom ross3d.arrow_build import table_from_rows\nfrom ross3d.prep.store import "
            "SCENES_SCHEMA\ntable_from_rows([{'scene_id': 's', 'axis_align': np.eye(4).reshape(16)}], SCENES_SCHEMA)\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
