"""Geometry of depth frames in the axis-aligned frame: per-pixel world coordinates (zero-depth pixels at the camera
centre, counted as the original does unless `--exclude-zero-depth`), 0.1 m voxel ids for coverage,
the original's mapping to the 384x384 crop (nearest resize of the depth-size map to W'x384, centre crop), per-token
mean coordinates over 27x27-pixel cells of the 378x378 region, and their int16 voxel indices."""

from __future__ import annotations

import cv2
import numpy as np

VOXEL_SIZE = 0.1
CROP = 384
REGION = 378  # what SigLIP sees: the crop minus its last 6 rows and columns
TOKEN_GRID = 14  # 14 x 27 = 378
PATCH_GRID = 27  # 27 x 14 = 378
XYZ_MIN = np.array([-15.0, -15.0, -5.0], np.float32)
XYZ_MAX = np.array([15.0, 15.0, 5.0], np.float32)


def unproject(depth: np.ndarray, intrinsic: np.ndarray, cam_to_world: np.ndarray, depth_shift: float = 1000.0
              ) -> np.ndarray:
    """(H, W, 3) float32 world points: z = d/shift, x = (u-cx) z/fx, y = (v-cy) z/fy, then the 4x4 pose.
    Zero-depth pixels land on the camera centre (see `depth_validity`)."""
    h, w = depth.shape
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    z = depth.astype(np.float32) / np.float32(depth_shift)
    u = (np.arange(w, dtype=np.float32) - np.float32(cx)) / np.float32(fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(cy)) / np.float32(fy)
    cam = np.stack([u[None, :] * z, v[:, None] * z, z], axis=-1)
    rot, trans = cam_to_world[:3, :3].astype(np.float32), cam_to_world[:3, 3].astype(np.float32)
    return cam @ rot.T + trans


def depth_validity(depth: np.ndarray, exclude_zero_depth: bool) -> np.ndarray:
    """Which pixels count as points: all of them, as the original (zero depth at the camera centre), or only those
    with depth > 0 (`--exclude-zero-depth`)."""
    return depth > 0 if exclude_zero_depth else np.ones(depth.shape, bool)


def voxel_indices(points: np.ndarray) -> np.ndarray:
    """(N, 3) int64 `round(xyz / 0.1)` (round half to even, as torch.round), computed in float32."""
    return np.round(points.astype(np.float32, copy=False) / np.float32(VOXEL_SIZE)).astype(np.int64)


class MeshVoxels:
    """The 0.1 m voxels of the aligned mesh vertices, numbered 0..n-1 in lexicographic (x, y, z) order, with a
    dense lookup grid over their bounding box so a frame's points map to voxel ids without sorting."""

    def __init__(self, vertices: np.ndarray):
        idx = voxel_indices(vertices)
        self.origin = idx.min(axis=0)
        self.shape = tuple(int(v) for v in idx.max(axis=0) - self.origin + 1)
        flat = np.ravel_multi_index((idx - self.origin).T, self.shape)
        cells = np.unique(flat)  # C order of (x, y, z) = lexicographic order of the voxel triples
        self.grid = np.full(int(np.prod(self.shape)), -1, np.int32)
        self.grid[cells] = np.arange(len(cells), dtype=np.int32)
        self.count = len(cells)

    def ids(self, points: np.ndarray) -> np.ndarray:
        """Sorted unique ids of the mesh voxels that (N, 3) points fall in (points elsewhere are dropped)."""
        q = np.rint(points.astype(np.float32, copy=False) / np.float32(VOXEL_SIZE))  # same as voxel_indices
        q -= self.origin.astype(np.float32)  # exact: voxel indices are small integers
        inside = np.ones(len(q), bool)
        for axis in range(3):
            inside &= (q[:, axis] >= 0) & (q[:, axis] < self.shape[axis])
        q = q[inside].astype(np.int64)
        flat = (q[:, 0] * self.shape[1] + q[:, 1]) * self.shape[2] + q[:, 2]
        hit = self.grid[flat]
        seen = np.zeros(self.count, bool)
        seen[hit[hit >= 0]] = True
        return np.flatnonzero(seen)


def crop_map(values: np.ndarray) -> np.ndarray:
    """Map an (H, W, C) depth-size map to the 384x384 crop: nearest resize to (int(W*384/H), 384), centre crop."""
    h, w = values.shape[:2]
    new_w = int(w * CROP / h)
    resized = cv2.resize(values, (new_w, CROP), interpolation=cv2.INTER_NEAREST)
    if resized.ndim == 2:
        resized = resized[..., None]
    left = (new_w - CROP) // 2
    return resized[:, left:left + CROP]


def cell_means(points: np.ndarray, valid: np.ndarray, grid: int, fallback: np.ndarray) -> np.ndarray:
    """(grid, grid, 3) means of the valid points of the 378x378 region's cells; a cell without any valid point
    (only with `--exclude-zero-depth`) takes `fallback` (the camera centre, where zero-depth pixels land)."""
    cell = REGION // grid
    pts = points[:REGION, :REGION].reshape(grid, cell, grid, cell, 3).astype(np.float64)
    w = valid[:REGION, :REGION].reshape(grid, cell, grid, cell, 1)
    total = (pts * w).sum(axis=(1, 3))
    count = w.sum(axis=(1, 3))
    means = np.where(count > 0, total / np.maximum(count, 1), fallback)
    return means.astype(np.float32)


def discrete_voxels(coords: np.ndarray) -> np.ndarray:
    """int16 indices: clamp to [-15,-15,-5]..[15,15,5] m, subtract the minimum, / 0.1, round (half to even)."""
    clamped = np.clip(coords, XYZ_MIN, XYZ_MAX) - XYZ_MIN
    return np.round(clamped / np.float32(VOXEL_SIZE)).astype(np.int16)


def frame_crop_points(depth: np.ndarray, intrinsic: np.ndarray, aligned_pose: np.ndarray, depth_shift: float,
                      exclude_zero_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """World points (384, 384, 3) f32 and their validity (`depth_validity`) on the 384 crop, as the original maps
    them."""
    world = unproject(depth, intrinsic, aligned_pose, depth_shift)
    stacked = np.concatenate([world, depth_validity(depth, exclude_zero_depth).astype(np.float32)[..., None]], axis=-1)
    crop = crop_map(stacked)
    return crop[..., :3], crop[..., 3] > 0.5
