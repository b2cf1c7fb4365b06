"""What the converters need from PREP_DIR: the known scenes (scenes.parquet, objects.parquet) and the GT boxes
and labels of objects (objects.parquet from `ross3d prep scannet`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ross3d.errors import InputError
from ross3d.prep.qa.report import RecordError
from ross3d.safe_names import RULE, check_scene_id, is_safe_name

OBJECT_COLUMNS = ("scene_id", "object_id", "label", "box")


@dataclass
class SceneIndex:
    """Known scene ids and per-object GT AABBs (cx, cy, cz, dx, dy, dz) in the aligned frame."""

    scenes: set[str]
    boxes: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def require_scene(self, scene_id: str) -> None:
        if not is_safe_name(scene_id):
            raise RecordError(f"scene id is not a safe name ({RULE})")
        if scene_id in self.failed:
            raise RecordError("scene failed in prep scannet")
        if scene_id not in self.scenes:
            raise RecordError("unknown scene")

    def box(self, scene_id: str, object_id: int) -> np.ndarray:
        """The object's GT box; RecordError when the object is unknown or has no geometry (NaN box)."""
        box = self.boxes.get((scene_id, object_id))
        if box is None:
            raise RecordError("unknown object")
        if not np.isfinite(box).all():
            raise RecordError("object has no vertices (NaN box)")
        return box


def load_scene_index(prep_dir: str | Path) -> SceneIndex:
    """Scenes and objects of PREP_DIR; at least one of scenes.parquet / objects.parquet must exist. Scenes whose
    scenes.parquet status is "failed" are kept apart: their samples are bad records."""
    prep_dir = Path(prep_dir)
    scenes_path, objects_path = prep_dir / "scenes.parquet", prep_dir / "objects.parquet"
    if not scenes_path.is_file() and not objects_path.is_file():
        raise InputError(prep_dir, "no scenes.parquet or objects.parquet (run `ross3d prep scannet` first)")
    scenes: set[str] = set()
    failed: set[str] = set()
    if scenes_path.is_file():
        table = pq.read_table(scenes_path)
        status = table.column("status").to_pylist() if "status" in table.column_names else None
        for k, sid in enumerate(table.column("scene_id").to_pylist()):
            check_scene_id(sid, scenes_path)
            (failed if status is not None and status[k] == "failed" else scenes).add(sid)
    boxes: dict[tuple[str, int], np.ndarray] = {}
    if objects_path.is_file():
        table = pq.read_table(objects_path)
        missing = [c for c in OBJECT_COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(objects_path, f"missing columns {missing}")
        box_values = table.column("box").to_pylist()
        for sid, oid, box in zip(table.column("scene_id").to_pylist(), table.column("object_id").to_pylist(),
                                 box_values):
            if box is None or len(box) != 6:
                raise InputError(objects_path, f"box of {sid}/{oid} is not 6 numbers")
            boxes[(check_scene_id(sid, objects_path), int(oid))] = np.asarray(box, dtype=np.float32)
            if sid not in failed:
                scenes.add(sid)
    return SceneIndex(scenes, boxes, failed)
