"""Mesh ray casting shared by the synthetic scene renderer (RGB-D frames) and the BEV renderer.

One open3d `RaycastingScene` is built per mesh; every call casts all its rays at once. Colours are the hit
triangle's vertex colours interpolated with the hit's barycentric coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ross3d.open3d_core import open3d_core


@dataclass
class RayHits:
    """Per-ray results; `t` is in units of the direction vector (so a camera ray (x, y, 1) gives z-depth)."""

    t: np.ndarray  # (...) float32, inf on miss
    hit: np.ndarray  # (...) bool
    rgb: np.ndarray  # (..., 3) uint8, 0 on miss
    face: np.ndarray  # (...) int64, -1 on miss


class MeshRaycaster:
    """Casts rays against a triangle mesh with per-vertex RGB colours."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray):
        o3d = open3d_core()

        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        self.colors = np.ascontiguousarray(colors, dtype=np.float32)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        o3d = open3d_core()

        shape = np.broadcast_shapes(origins.shape, directions.shape)[:-1]
        rays = np.concatenate([np.broadcast_to(origins, (*shape, 3)), np.broadcast_to(directions, (*shape, 3))], -1)
        out = self._scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays.reshape(-1, 6), dtype=np.float32)))
        t = out["t_hit"].numpy()
        hit = np.isfinite(t)
        face = np.where(hit, out["primitive_ids"].numpy().astype(np.int64), -1)
        uv = out["primitive_uvs"].numpy()
        rgb = np.zeros((len(t), 3), np.uint8)
        if hit.any():
            tri = self.faces[face[hit]]
            u, v = uv[hit, 0:1], uv[hit, 1:2]
            # open3d's barycentrics: point = (1 - u - v) * v0 + u * v1 + v * v2.
            mixed = (1 - u - v) * self.colors[tri[:, 0]] + u * self.colors[tri[:, 1]] + v * self.colors[tri[:, 2]]
            rgb[hit] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return RayHits(t.reshape(shape), hit.reshape(shape), rgb.reshape(*shape, 3), face.reshape(shape))


def pinhole_rays(intrinsic: np.ndarray, width: int, height: int, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through integer pixel positions (u, v) of a pinhole camera (x right, y down, z forward).

    The camera-space direction is ((u - cx) / fx, (v - cy) / fy, 1), the inverse of ScanNet's unprojection
    x = (u - cx) z / fx, so the hit parameter t is the z-depth and unprojecting it lands on the surface exactly.
    Returns origins and directions of shape (height, width, 3).
    """
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    directions = cam @ cam_to_world[:3, :3].T
    origins = np.broadcast_to(cam_to_world[:3, 3], directions.shape)
    return origins, directions
