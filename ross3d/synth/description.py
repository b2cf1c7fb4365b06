"""What a scene generator knows about the scene it wrote, independently of what ross3d's prep reads back from the
scan files: the aligned geometry it built, the axis alignment it applied, which faces are the ceiling, the room
height and, per aggregation object in objectId order, the object's axis-aligned box (None for an object without
geometry). `ross3d.synth.posed_export` derives the original's files (box lists, selection, released-style BEV)
from it, so the compatibility tests compare prep against files that do not come from prep's own code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneDescription:
    scene_id: str
    axis_align: np.ndarray  # (4, 4) raw scan frame -> aligned frame
    vertices: np.ndarray  # (N, 3) float64, aligned frame
    colors: np.ndarray  # (N, 3) uint8
    faces: np.ndarray  # (F, 3) int
    ceiling: np.ndarray  # (F,) bool: faces of the ceiling (and pieces hanging from it)
    room_height: float  # floor at z = 0, ceiling at z = room_height
    object_ids: list[int]  # the aggregation's objectIds, in file order
    object_boxes: list[np.ndarray | None]  # per object (cx, cy, cz, dx, dy, dz) in the aligned frame, or None


def describe_synth(scene) -> SceneDescription:
    """The description of a `ross3d.synth.scenes.SynthScene`: its room's own mesh and object boxes (computed by
    `ross3d.synth.room.build_room` from the vertices it placed); the ceiling is the ceiling object's faces and the
    unannotated segments (the tilted fragments hanging from it)."""
    room = scene.room
    annotated = {s for o in room.objects for s in o.segments}
    ceiling_segments = {s for o in room.objects if o.label == "ceiling" for s in o.segments}
    seg = room.segment_of_vertex
    vertex_ceiling = np.isin(seg, list(ceiling_segments)) | ~np.isin(seg, list(annotated))
    return SceneDescription(
        scene_id=scene.scene_id, axis_align=np.asarray(scene.axis_align, np.float64), vertices=room.vertices,
        colors=room.colors, faces=room.faces, ceiling=vertex_ceiling[room.faces].all(axis=1),
        room_height=float(room.size[2]), object_ids=[o.object_id for o in room.objects],
        object_boxes=[np.asarray(o.box, np.float64) for o in room.objects])
