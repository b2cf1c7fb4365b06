"""Shared helpers for the prep-qa tests: a tiny PREP_DIR objects table, a label map and JSON writers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# (scene_id, object_id, label, box): a unit-free toy layout; object 4 has no vertices (NaN box)
OBJECTS = [
    ("scene0000_00", 0, "chair", [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]),
    ("scene0000_00", 1, "chair", [5.0, 0.0, 0.0, 2.0, 2.0, 2.0]),
    ("scene0000_00", 2, "table", [0.0, 5.0, 0.0, 2.0, 2.0, 1.0]),
    ("scene0000_00", 3, "toaster oven", [0.0, -5.0, 0.0, 1.0, 1.0, 1.0]),
    ("scene0000_00", 4, "pillow", [float("nan")] * 6),
    ("scene0000_00", 5, "pillow", [3.0, 3.0, 0.0, 1.0, 1.0, 1.0]),
    ("scene0001_00", 0, "chair", [1.0, 1.0, 0.5, 1.0, 1.0, 1.0]),
    ("scene0001_00", 1, "kitchen cabinets", [2.0, 2.0, 0.5, 1.0, 2.0, 1.0]),
]

LABEL_MAP_ROWS = [  # raw_category, nyu40id (toaster oven 40 and pillow 18 are outside the 18 classes -> 39)
    ("chair", 5), ("table", 7), ("toaster oven", 40), ("pillow", 18), ("kitchen cabinets", 3),
]


def write_objects(prep_dir) -> None:
    prep_dir.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "scene_id": [o[0] for o in OBJECTS],
        "object_id": pa.array([o[1] for o in OBJECTS], pa.int32()),
        "label": [o[2] for o in OBJECTS],
        "box": pa.array([o[3] for o in OBJECTS], pa.list_(pa.float32(), 6)),
        "n_vertices": pa.array([0 if np.isnan(o[3][0]) else 100 for o in OBJECTS], pa.int32()),
    })
    pq.write_table(table, prep_dir / "objects.parquet")


def write_label_map(path) -> None:
    lines = ["id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyu40class"]
    lines += [f"{k}\t{raw}\t{raw}\t1\t{nyu}\t1\tx" for k, (raw, nyu) in enumerate(LABEL_MAP_ROWS, start=1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_json(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def box_of(scene_id: str, object_id: int) -> list[float]:
    return next(o[3] for o in OBJECTS if o[0] == scene_id and o[1] == object_id)
