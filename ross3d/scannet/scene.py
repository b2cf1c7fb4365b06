"""ScanNet scene files: paths of one scan, the `_vh_clean_2.ply` mesh, `<scene>.txt` axis alignment, and
aggregation + segments -> objects with axis-aligned boxes (cx, cy, cz, dx, dy, dz) in the aligned frame."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ross3d.errors import InputError
from ross3d.safe_names import child_path
from ross3d.scannet.ply import read_header, read_triangle_ply

log = logging.getLogger(__name__)
PLY_HEADER_MAX = 1 << 16  # bytes searched for a ply header


@dataclass(frozen=True)
class ScanPaths:
    """The raw files of one scan directory `SCANS_DIR/<scene_id>/`."""

    root: Path
    scene_id: str

    @property
    def sens(self) -> Path:
        return self.root / f"{self.scene_id}.sens"

    @property
    def mesh(self) -> Path:
        return self.root / f"{self.scene_id}_vh_clean_2.ply"

    @property
    def meta(self) -> Path:
        return self.root / f"{self.scene_id}.txt"

    @property
    def aggregation(self) -> Path:
        return self.root / f"{self.scene_id}.aggregation.json"

    @property
    def segs(self) -> Path:
        return self.root / f"{self.scene_id}_vh_clean_2.0.010000.segs.json"


def scan_paths(scans_dir: str | Path, scene_id: str) -> ScanPaths:
    """The files of SCANS_DIR/<scene_id>/ (the id must be a safe name, ross3d.safe_names)."""
    return ScanPaths(child_path(scans_dir, scene_id), scene_id)


@dataclass
class SceneMesh:
    """A triangle mesh in the scan's raw frame: float64 vertices, uint8 RGB colours, int32 faces."""

    vertices: np.ndarray  # (N, 3) float64
    colors: np.ndarray  # (N, 3) uint8
    faces: np.ndarray  # (F, 3) int32


def ply_element_counts(path: Path) -> dict[str, int]:
    """The `element <name> <count>` lines of a ply header (InputError when there is no header)."""
    with open(path, "rb") as f:
        header = read_header(f.read(PLY_HEADER_MAX))
    if header is None:
        raise InputError(path, f"not a ply file (no 'ply' ... 'end_header' within {PLY_HEADER_MAX} bytes)")
    return {name: count for name, count, _ in header[1]}


def read_mesh(path: str | Path) -> SceneMesh:
    """Read a ScanNet ply (binary, RGBA vertex colours, `list uchar int` faces): binary little-endian triangle
    meshes straight into numpy (ross3d.scannet.ply.read_triangle_ply), any other ply with open3d. open3d returns
    what it read before a truncation, so the counts are checked against the header: a short or inconsistent file
    is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "mesh file not found")
    declared = ply_element_counts(path)
    direct = read_triangle_ply(path.read_bytes())
    vertices, colors, faces = direct if direct is not None else _read_mesh_open3d(path)
    if len(vertices) == 0 or len(faces) == 0:
        raise InputError(path, "not a readable triangle mesh (no vertices or faces)")
    if len(vertices) != declared.get("vertex") or len(faces) < declared.get("face", 0):
        raise InputError(path, f"truncated or corrupt: the header declares {declared.get('vertex')} vertices and "
                               f"{declared.get('face', 0)} faces, {len(vertices)} and {len(faces)} were read")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(path, f"a face refers to vertex {int(faces.max())} of {len(vertices)}")
    if colors is None:
        log.warning("%s: mesh has no vertex colours; using grey", path)
        colors = np.full((len(vertices), 3), 128, np.uint8)
    return SceneMesh(vertices, colors, faces)


def _read_mesh_open3d(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Vertices, colours back in 0..255 (None without any) and faces of a ply as open3d reads it."""
    from ross3d.open3d_core import open3d_core

    mesh = open3d_core().io.read_triangle_mesh(str(path))
    colors = np.rint(np.asarray(mesh.vertex_colors) * 255.0).clip(0, 255).astype(np.uint8) \
        if mesh.has_vertex_colors() else None
    return np.asarray(mesh.vertices, dtype=np.float64), colors, np.asarray(mesh.triangles, dtype=np.int32)


def read_scene_meta(path: str | Path) -> dict[str, str]:
    """Parse `key = value` lines (CRLF tolerated; values may contain spaces and '=')."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(path, f"cannot read scene metadata: {err.strerror}") from None
    meta: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


def read_axis_alignment(path: str | Path) -> tuple[np.ndarray, bool]:
    """The 4x4 `axisAlignment` (row-major) of `<scene>.txt`, and whether it was present.

    ScanNet v1 files and test scans have none: identity is returned with a warning (aligned = False).
    """
    path = Path(path)
    value = read_scene_meta(path).get("axisAlignment")
    if value is None:
        log.warning("%s: no axisAlignment; using identity (scene marked aligned = false)", path)
        return np.eye(4), False
    try:
        numbers = [float(x) for x in value.split()]
    except ValueError:
        raise InputError(path, f"axisAlignment is not 16 numbers: {value!r}") from None
    if len(numbers) != 16 or not np.isfinite(numbers).all():
        raise InputError(path, f"axisAlignment must hold 16 finite numbers, got {len(numbers)}")
    return np.asarray(numbers, dtype=np.float64).reshape(4, 4), True


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid/affine transform to (N, 3) points."""
    out = points @ matrix[:3, :3].T
    for c in range(3):  # per column: the same sums as adding matrix[:3, 3] by broadcasting, several times faster
        out[:, c] += matrix[c, 3]
    return out


@dataclass
class SceneObject:
    """One annotated object: aggregation `objectId`, its raw label, and the mesh vertices of its segments."""

    object_id: int
    label: str
    vertex_indices: np.ndarray  # int64


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def read_objects(aggregation_path: str | Path, segs_path: str | Path, *, n_vertices: int) -> list[SceneObject]:
    """Objects from `<scene>.aggregation.json` (segGroups) and `..segs.json` (segIndices per vertex of the mesh of
    `n_vertices` vertices; a segs file of another mesh is an InputError naming it)."""
    aggregation_path, segs_path = Path(aggregation_path), Path(segs_path)
    segs = _load_json(segs_path)
    seg_indices = segs.get("segIndices") if isinstance(segs, dict) else None
    if not isinstance(seg_indices, list):
        raise InputError(segs_path, "missing 'segIndices' list")
    if len(seg_indices) != n_vertices:
        raise InputError(segs_path, f"segIndices has {len(seg_indices)} entries but the mesh has {n_vertices} "
                                    "vertices (a segs file of another scene?)")
    try:
        seg_of_vertex = np.asarray(seg_indices, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(segs_path, "segIndices must be integers") from None
    groups = _load_json(aggregation_path).get("segGroups")
    if not isinstance(groups, list):
        raise InputError(aggregation_path, "missing 'segGroups' list")
    order = np.argsort(seg_of_vertex, kind="stable")
    sorted_segs = seg_of_vertex[order]
    objects = []
    for group in groups:
        try:
            object_id, label, segments = int(group["objectId"]), str(group["label"]), group["segments"]
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(aggregation_path, f"malformed segGroup ({err!r})") from None
        segs = np.unique(np.asarray(segments, dtype=np.int64))
        lo = np.searchsorted(sorted_segs, segs, side="left")
        hi = np.searchsorted(sorted_segs, segs, side="right")
        verts = np.concatenate([order[a:b] for a, b in zip(lo, hi)]) if len(segs) else np.zeros(0, np.int64)
        objects.append(SceneObject(object_id, label, np.sort(verts)))
    objects.sort(key=lambda o: o.object_id)
    return objects


def object_boxes(objects: list[SceneObject], aligned_vertices: np.ndarray) -> np.ndarray:
    """(K, 6) float32 AABBs (cx, cy, cz, dx, dy, dz) over each object's aligned vertices; NaN when it has none."""
    boxes = np.full((len(objects), 6), np.nan, dtype=np.float32)
    for k, obj in enumerate(objects):
        if len(obj.vertex_indices) == 0:
            log.warning("object %d (%s) has no vertices; its box is NaN", obj.object_id, obj.label)
            continue
        pts = aligned_vertices[obj.vertex_indices]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        boxes[k, :3] = (lo + hi) / 2
        boxes[k, 3:] = hi - lo
    return boxes
