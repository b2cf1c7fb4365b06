"""A tiny hand-made ScanNet-format scan for the prep tests: a box room (floor, four walls, a flat ceiling and a
tilted ceiling fragment along one wall) with a table, written in the raw (unaligned) frame, depth rendered by
ross3d.render ray casting from cameras inside the room, random small JPEGs as colour."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d

from ross3d.render import MeshRaycaster, pinhole_rays
from ross3d.scannet.sens import SensWriter
from ross3d.synth.description import SceneDescription
from ross3d.synth.capture import look_at

ROOM = (4.0, 3.0, 2.5)  # x, y, z extent in the aligned frame, floor at z = 0, room centred at x = y = 0
COLOR_SIZE, DEPTH_SIZE = (80, 60), (64, 48)
FLOOR_RGB, TABLE_RGB = (200, 30, 30), (30, 200, 30)
TABLE_BOX = ((-0.5, -0.4, 0.0), (0.5, 0.4, 0.75))
GROUPS = [{"objectId": 0, "label": "floor", "segments": [0]}, {"objectId": 1, "label": "coffee table", "segments": [4]},
          {"objectId": 2, "label": "ghost", "segments": [99]}]  # the ghost's segment has no vertices
CEILING_PARTS = ("ceiling", "fragment")


def axis_alignment() -> np.ndarray:
    """The scene's axisAlignment: a 30 degree turn about z and a shift."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = [0.3, -0.2, 0.0]
    return m


def _quad(p0, p1, p2, p3, n=4):
    """A quad subdivided n x n (vertices (n+1)^2, faces 2 n^2), winding p0 p1 p2 (normal by right hand)."""
    u = np.linspace(0, 1, n + 1)
    a, b = np.meshgrid(u, u, indexing="ij")
    p0, p1, p3 = map(np.asarray, (p0, p1, p3))
    verts = p0 + a[..., None] * (p1 - p0) + b[..., None] * (p3 - p0)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    f = []
    for i in range(n):
        for j in range(n):
            f += [[idx[i, j], idx[i + 1, j], idx[i + 1, j + 1]], [idx[i, j], idx[i + 1, j + 1], idx[i, j + 1]]]
    return verts.reshape(-1, 3), np.asarray(f)


def _box(lo, hi):
    """Top and four sides of an axis-aligned box, normals outwards."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    return [((x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)),
            ((x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)),
            ((x1, y1, z0), (x0, y1, z0), (x0, y1, z1), (x1, y1, z1)),
            ((x0, y1, z0), (x0, y0, z0), (x0, y0, z1), (x0, y1, z1)),
            ((x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1))]


def room_parts(scale: float = 1.0):
    """(name, quads, rgb, segment) of the aligned room (x, y scaled by `scale`); normals point into the room."""
    x, y, z = ROOM[0] / 2 * scale, ROOM[1] / 2 * scale, ROOM[2]
    return [
        ("floor", [((-x, -y, 0), (x, -y, 0), (x, y, 0), (-x, y, 0))], FLOOR_RGB, 0),
        ("wall", [((-x, -y, 0), (-x, -y, z), (x, -y, z), (x, -y, 0)), ((x, y, 0), (x, y, z), (-x, y, z), (-x, y, 0)),
                  ((-x, y, 0), (-x, y, z), (-x, -y, z), (-x, -y, 0)), ((x, -y, 0), (x, -y, z), (x, y, z), (x, y, 0))],
         (120, 120, 200), 1),
        ("ceiling", [((-x, -y, z), (-x, y, z), (x, y, z), (x, -y, z))], (250, 250, 250), 2),
        # tilted fragment hanging along the +x wall, 0.3-0.6 m below the top, facing down into the room
        ("fragment", [((x - 0.6, -y, z - 0.6), (x - 0.6, y, z - 0.6), (x, y, z - 0.3), (x, -y, z - 0.3))],
         (255, 255, 0), 3),
        ("table", _box(*TABLE_BOX), TABLE_RGB, 4),
    ]


def build_mesh(scale: float = 1.0, subdivisions: int = 4):
    """Aligned vertices (float64), colours (uint8), faces (int32), segment per vertex; 24 n^2 triangles."""
    verts, cols, faces, segs = [], [], [], []
    offset = 0
    for _, quads, rgb, seg in room_parts(scale):
        for q in quads:
            v, f = _quad(*q, n=subdivisions)
            verts.append(v)
            faces.append(f + offset)
            cols.append(np.tile(rgb, (len(v), 1)))
            segs.append(np.full(len(v), seg))
            offset += len(v)
    return (np.concatenate(verts), np.concatenate(cols).astype(np.uint8), np.concatenate(faces).astype(np.int32),
            np.concatenate(segs))


def describe(scene_id: str, scale: float = 1.0, subdivisions: int = 4) -> SceneDescription:
    """What `write_scene` built, for ross3d.synth.posed_export: the aligned mesh, the ceiling and its fragment as
    the ceiling, and each group's box from the corners of its parts' quads (None for the ghost)."""
    verts, cols, faces, segs = build_mesh(scale, subdivisions)
    parts = room_parts(scale)
    ceiling_segments = [seg for name, _, _, seg in parts if name in CEILING_PARTS]
    boxes = []
    for group in GROUPS:
        corners = [c for _, quads, _, seg in parts if seg in group["segments"] for q in quads for c in q]
        lo, hi = (np.min(corners, axis=0), np.max(corners, axis=0)) if corners else (None, None)
        boxes.append(None if lo is None else np.concatenate([(lo + hi) / 2, hi - lo]))
    return SceneDescription(scene_id, axis_alignment(), verts, cols, faces,
                            np.isin(segs, ceiling_segments)[faces].all(axis=1), ROOM[2],
                            [g["objectId"] for g in GROUPS], boxes)


def depth_intrinsic(depth_size=DEPTH_SIZE) -> np.ndarray:
    """ScanNet-like field of view (fx = 0.9 * width)."""
    k = np.eye(4)
    k[0, 0] = k[1, 1] = 0.9 * depth_size[0]
    k[0, 2], k[1, 2] = depth_size[0] / 2 - 0.5, depth_size[1] / 2 - 0.5
    return k


def render_depth(caster: MeshRaycaster, cam_to_world_aligned, depth_size=DEPTH_SIZE) -> np.ndarray:
    """uint16 mm depth (z along the optical axis) of the aligned mesh."""
    origins, directions = pinhole_rays(depth_intrinsic(depth_size), *depth_size, cam_to_world_aligned)
    t = caster.cast(origins, directions).t  # directions have unit camera z: t is the z depth
    return np.clip(np.rint(np.where(np.isfinite(t), t * 1000.0, 0)), 0, 65535).astype(np.uint16)


def write_scene(scans: Path, scene_id: str, n_frames: int = 40, invalid: tuple[int, ...] = (10, 30), seed: int = 0,
                color_size=COLOR_SIZE, depth_size=DEPTH_SIZE, scale: float = 1.0, subdivisions: int = 4,
                keep: bool = True, holes: float = 0.0) -> dict:
    """Write one scan; returns what the tests compare against (jpegs, poses, depths, aligned mesh; frame data
    only with `keep`). Cameras circle the table at 1.5 m height. `holes`: the fraction of depth pixels set to 0,
    scattered at random (seeded)."""
    rng = np.random.default_rng(seed)
    hole_rng = np.random.default_rng(seed + 1000)
    root = scans / scene_id
    root.mkdir(parents=True)
    axis = axis_alignment()
    verts, cols, faces, segs = build_mesh(scale, subdivisions)
    caster = MeshRaycaster(verts, faces, cols)
    raw = verts @ np.linalg.inv(axis)[:3, :3].T + np.linalg.inv(axis)[:3, 3]
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(raw), o3d.utility.Vector3iVector(faces))
    mesh.vertex_colors = o3d.utility.Vector3dVector(cols / 255.0)
    o3d.io.write_triangle_mesh(str(root / f"{scene_id}_vh_clean_2.ply"), mesh)
    (root / f"{scene_id}.txt").write_text(
        "axisAlignment = " + " ".join(f"{v:.17g}" for v in axis.ravel()) + "\r\nsceneType = Bedroom / Hotel\r\n")
    (root / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": segs.tolist()}))
    (root / f"{scene_id}.aggregation.json").write_text(json.dumps({"segGroups": GROUPS}))
    k_color = np.eye(4)
    jpegs, poses, depths = [], [], []
    inv_axis = np.linalg.inv(axis)
    with SensWriter(root / f"{scene_id}.sens", intrinsic_color=k_color, intrinsic_depth=depth_intrinsic(depth_size),
                    color_size=color_size, depth_size=depth_size) as writer:
        for i in range(n_frames):
            angle = 2 * np.pi * i / n_frames
            eye = np.array([1.2 * scale * np.cos(angle), 0.9 * scale * np.sin(angle), 1.5])
            target = [0.8 * scale * np.cos(angle + 2.2), 0.6 * scale * np.sin(angle + 2.2), 0.4]
            aligned_pose = look_at(np.asarray(eye, float), np.asarray(target, float))
            depth = render_depth(caster, aligned_pose, depth_size)
            depth[hole_rng.random(depth.shape) < holes] = 0
            pose = (inv_axis @ aligned_pose).astype(np.float32)
            if i in invalid:
                pose = np.full((4, 4), -np.inf, np.float32)
            small = rng.integers(0, 256, (color_size[1] // 8, color_size[0] // 8, 3), dtype=np.uint8)
            img = cv2.resize(small, color_size, interpolation=cv2.INTER_LINEAR)
            jpeg = cv2.imencode(".jpg", img)[1].tobytes()
            writer.write_frame(pose, jpeg, depth)
            if keep:
                jpegs.append(jpeg), poses.append(pose), depths.append(depth)
    return {"jpegs": jpegs, "poses": poses, "depths": depths, "vertices": verts, "faces": faces, "colors": cols,
            "axis": axis}
