"""PREP_DIR storage: atomic per-scene commit (temp dir + rename, `result.json` written last inside it), the merged
scenes/selections/objects tables (written once from collected rows, each by temp file + rename), and the manifest,
which is removed when a run starts and written last, so an interrupted run never looks complete."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ross3d.arrow_build import table_from_rows

RESULT_FILE = "result.json"
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"

SCENES_SCHEMA = pa.schema([
    ("scene_id", pa.string()), ("n_frames_total", pa.int32()), ("n_frames_kept", pa.int32()),
    ("n_frames_invalid", pa.int32()), ("axis_align", pa.list_(pa.float64(), 16)), ("aligned", pa.bool_()),
    ("color_width", pa.int32()), ("color_height", pa.int32()), ("depth_width", pa.int32()),
    ("depth_height", pa.int32()), ("intrinsic_color", pa.list_(pa.float32(), 16)),
    ("intrinsic_depth", pa.list_(pa.float32(), 16)), ("status", pa.string()), ("error", pa.string()),
])
SELECTIONS_SCHEMA = pa.schema([
    ("scene_id", pa.string()), ("strategy", pa.string()), ("rank", pa.int32()), ("frame_idx", pa.int32()),
    ("new_voxels", pa.int32()),
])
OBJECTS_SCHEMA = pa.schema([
    ("scene_id", pa.string()), ("object_id", pa.int32()), ("label", pa.string()),
    ("box", pa.list_(pa.float32(), 6)), ("n_vertices", pa.int32()),
])


def temp_path(final: Path) -> Path:
    """A unique sibling of `final` that never looks like a committed entry (leading dot, tmp mark)."""
    return final.with_name(f".{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace `final` by the finished `tmp`; a crash at any point leaves either the old, the new or no entry."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _pause_point(final)


PAUSE_ENV = "ROSS3D_PAUSE_AFTER_COMMITS"
_commits = 0


def _pause_point(final: Path) -> None:
    """Test hook for kill tests: with ROSS3D_PAUSE_AFTER_COMMITS=N:FILE the process writes the folder of its N-th
    commit to FILE and then sleeps until it is killed, so a test kills it at a known point, never by timing."""
    global _commits
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    _commits += 1
    count, _, marker = spec.partition(":")
    if _commits == int(count):  # the marker appears whole (a test kills as soon as it exists)
        tmp = temp_path(Path(marker))
        tmp.write_text(str(final))
        os.replace(tmp, marker)
        while True:
            time.sleep(60)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def write_table_atomic(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    tmp = temp_path(path)
    pq.write_table(table_from_rows(rows, schema), tmp)
    os.replace(tmp, path)


def clean_stale(directory: Path) -> None:
    """Remove leftovers of interrupted runs (temp and old entries) in `directory`."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(".") and (TMP_MARK in entry.name or OLD_MARK in entry.name):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def read_committed(scene_dir: Path) -> dict | None:
    """The result record of a committed scene, or None when absent/unreadable."""
    try:
        return json.loads((scene_dir / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def to_jsonable(value):
    """numpy scalars and arrays inside rows -> plain Python for result.json."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
