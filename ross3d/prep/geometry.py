"""Geometry of depth frames in the axis-aligned frame: per-pixel world coordinates (zero-depth pixels at the camera
centre, counted as the original does unless `--exclude-zero-depth`), 0.1 m voxel ids for coverage,
the original's mapping to the 384x384 crop (nearest resize of the depth-size map to W'x384, centre crop), per-token
mean coordinates over 27x27-pixel cells of the 378x378 region, and their int16 voxel indices.

Every function takes a batch of frames (leading axes) and gives each frame bitwise the result of processing it
alone: the rotation is one float32 matmul per image row, as for a single frame, and the cell sums add a cell's
pixels in the same order."""

from __future__ import annotations

import functools

import cv2
import numpy as np

VOXEL_SIZE = 0.1
CROP = 384
REGION = 378  # what SigLIP sees: the crop minus its last 6 rows and columns
TOKEN_GRID = 14  # 14 x 27 = 378
PATCH_GRID = 27  # 27 x 14 = 378
XYZ_MIN = np.array([-15.0, -15.0, -5.0], np.float32)
XYZ_MAX = np.array([15.0, 15.0, 5.0], np.float32)


def _ray_factors(intrinsic: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 (u - cx) / fx per column and (v - cy) / fy per row."""
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    u = (np.arange(width, dtype=np.float32) - np.float32(cx)) / np.float32(fx)
    v = (np.arange(height, dtype=np.float32) - np.float32(cy)) / np.float32(fy)
    return u, v


def _to_world(depth: np.ndarray, x_factor: np.ndarray, y_factor: np.ndarray, cam_to_world: np.ndarray,
              depth_shift: float) -> np.ndarray:
    """(..., A, B, 3) float32 world points of depth (..., A, B) whose pixels have the given ray factors
    (broadcastable to (A, B)), under poses (..., 4, 4)."""
    z = depth.astype(np.float32) / np.float32(depth_shift)
    cam = np.stack([x_factor * z, y_factor * z, z], axis=-1)
    rot = np.asarray(cam_to_world)[..., :3, :3].astype(np.float32)
    trans = np.asarray(cam_to_world)[..., :3, 3].astype(np.float32)
    world = cam @ np.swapaxes(rot, -1, -2)[..., None, :, :]
    add_per_point(world, trans[..., None, :])
    return world


def add_per_point(points: np.ndarray, offset: np.ndarray) -> None:
    """points (..., A, B, 3) += offset (..., 1, 3) in place, broadcast over the points of each (...) entry, as
    whole rows of B points: a broadcast over the last axis of 3 alone is several times slower."""
    rows = points.reshape(*points.shape[:-2], points.shape[-2] * 3)
    rows += np.tile(offset, points.shape[-2])


def unproject(depth: np.ndarray, intrinsic: np.ndarray, cam_to_world: np.ndarray, depth_shift: float = 1000.0
              ) -> np.ndarray:
    """(..., H, W, 3) float32 world points of depth (..., H, W) under poses (..., 4, 4): z = d/shift,
    x = (u-cx) z/fx, y = (v-cy) z/fy, then the pose. Zero-depth pixels land on the camera centre (see
    `depth_validity`)."""
    u, v = _ray_factors(intrinsic, depth.shape[-1], depth.shape[-2])
    return _to_world(depth, u[None, :], v[:, None], cam_to_world, depth_shift)


def depth_validity(depth: np.ndarray, exclude_zero_depth: bool) -> np.ndarray:
    """Which pixels count as points: all of them, as the original (zero depth at the camera centre), or only those
    with depth > 0 (`--exclude-zero-depth`)."""
    return depth > 0 if exclude_zero_depth else np.ones(depth.shape, bool)


def voxel_indices(points: np.ndarray) -> np.ndarray:
    """(N, 3) int64 `round(xyz / 0.1)` (round half to even, as torch.round), computed in float32."""
    return np.round(points.astype(np.float32, copy=False) / np.float32(VOXEL_SIZE)).astype(np.int64)


class MeshVoxels:
    """The 0.1 m voxels of the aligned mesh vertices, numbered 0..n-1 in lexicographic (x, y, z) order, with a
    dense lookup grid over their bounding box padded by one cell on every side (the padding and the empty cells
    hold n, "no mesh voxel"), so a frame's points map to voxel ids without sorting or bounds masks."""

    def __init__(self, vertices: np.ndarray):
        idx = voxel_indices(vertices)
        self.origin = idx.min(axis=0) - 1
        self.shape = tuple(int(v) for v in idx.max(axis=0) - self.origin + 2)
        flat = np.ravel_multi_index((idx - self.origin).T, self.shape)
        size = int(np.prod(self.shape))
        present = np.zeros(size, bool)
        present[flat] = True
        cells = np.flatnonzero(present)  # C order of (x, y, z) = lexicographic order of the voxel triples
        self.count = len(cells)
        self.grid = np.full(size, self.count, np.int32)
        self.grid[cells] = np.arange(len(cells), dtype=np.int32)
        exact = np.float32 if size <= 2 ** 24 else np.float64  # integers up to the size are exact in this type
        self._strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1], exact)

    def _cells(self, points: np.ndarray) -> np.ndarray:
        """(...) int64 grid cells of points (..., 3); points outside the box land on the padding. Whole rows of
        points are offset and clamped at once (as `add_per_point`), then the clamped integer coordinates are
        combined with the grid strides in one matrix-vector product, exact: every partial sum is an integer below
        the grid size, which the strides' float type holds exactly."""
        q = np.divide(points, np.float32(VOXEL_SIZE), dtype=np.float32)
        np.rint(q, out=q)  # same as voxel_indices
        rows = q.reshape(-1, q.shape[-2] * 3)
        rows -= np.tile(self.origin.astype(np.float32), q.shape[-2])
        np.maximum(rows, np.zeros(rows.shape[-1], np.float32), out=rows)  # a row of zeros: faster than a scalar
        np.minimum(rows, np.tile(np.asarray(self.shape, np.float32) - 1, q.shape[-2]), out=rows)
        return (q @ self._strides).astype(np.int64)

    def frame_ids(self, points: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
        """Per frame of points (F, ..., 3) with validity (F, ...): sorted unique ids of the mesh voxels its valid
        points fall in."""
        cells = self._cells(points)
        if not valid.all():
            cells *= valid  # invalid -> cell 0, padding
        n = self.count + 1  # a frame's row of `seen`: its mesh voxels, then "no mesh voxel"
        hit = self.grid[cells].reshape(len(points), -1)
        hit += np.arange(0, len(points) * n, n, dtype=np.int32)[:, None]
        seen = np.zeros((len(points), n), bool)
        seen.reshape(-1)[hit.reshape(-1)] = True
        return [np.flatnonzero(row[:-1]) for row in seen]

    def ids(self, points: np.ndarray) -> np.ndarray:
        """Sorted unique ids of the mesh voxels that (N, 3) points fall in (points elsewhere are dropped)."""
        return self.frame_ids(points[None], np.ones((1, len(points)), bool))[0]


def crop_map(values: np.ndarray) -> np.ndarray:
    """Map an (H, W, C) depth-size map to the 384x384 crop: nearest resize to (int(W*384/H), 384), centre crop."""
    h, w = values.shape[:2]
    new_w = int(w * CROP / h)
    resized = cv2.resize(values, (new_w, CROP), interpolation=cv2.INTER_NEAREST)
    if resized.ndim == 2:
        resized = resized[..., None]
    left = (new_w - CROP) // 2
    return resized[:, left:left + CROP]


@functools.lru_cache(maxsize=8)
def crop_pixels(height: int, width: int) -> np.ndarray:
    """(384, 384) flat index (row * width + col) of the depth pixel each crop pixel takes under `crop_map`."""
    index = np.arange(height * width, dtype=np.float64).reshape(height, width)
    return crop_map(index)[..., 0].astype(np.int64)


def cell_means(points: np.ndarray, valid: np.ndarray, grid: int, fallback: np.ndarray) -> np.ndarray:
    """(..., grid, grid, 3) means over the 378x378 region's cells of the valid crop points (..., 384, 384, 3)
    (`depth_validity`: every pixel by default, zero-depth ones at the camera centre as in the original); a cell
    without any valid point (only with `--exclude-zero-depth`) takes `fallback` (..., 3), the camera centre.

    Sums are float64 and add each cell's pixels one at a time in row-major order (for all cells of all frames at
    once, one coordinate plane at a time), so every frame gets bitwise the sums of summing its cells alone."""
    cell = REGION // grid
    lead = points.shape[:-3]
    ok = valid[..., :REGION, :REGION]
    total = np.empty((*lead, grid, grid, 3))
    for c in range(3):
        plane = np.where(ok, points[..., :REGION, :REGION, c], np.float32(0))
        cells = plane.reshape(*lead, grid, cell, grid, cell)
        acc = np.zeros((*lead, grid, grid))
        for row in range(cell):
            for col in range(cell):
                acc += cells[..., :, row, :, col]
        total[..., c] = acc
    count = ok.reshape(*lead, grid, cell, grid, cell).sum(axis=(-3, -1))[..., None]
    fallback = np.asarray(fallback, np.float64)[..., None, None, :]
    return np.where(count > 0, total / np.maximum(count, 1), fallback).astype(np.float32)


def discrete_voxels(coords: np.ndarray) -> np.ndarray:
    """int16 indices: clamp to [-15,-15,-5]..[15,15,5] m, subtract the minimum, / 0.1, round (half to even)."""
    clamped = np.clip(coords, XYZ_MIN, XYZ_MAX) - XYZ_MIN
    return np.round(clamped / np.float32(VOXEL_SIZE)).astype(np.int16)


def frame_crop_points(depth: np.ndarray, intrinsic: np.ndarray, aligned_pose: np.ndarray, depth_shift: float,
                      exclude_zero_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 384, 384, 3) f32 and their validity (`depth_validity`) on the 384 crop of depth
    (..., H, W) under poses (..., 4, 4), as the original maps them: only the crop's pixels are unprojected."""
    h, w = depth.shape[-2:]
    pixels = crop_pixels(h, w)
    u, v = _ray_factors(intrinsic, w, h)
    crop_depth = depth.reshape(*depth.shape[:-2], h * w)[..., pixels]
    world = _to_world(crop_depth, u[pixels % w], v[pixels // w], aligned_pose, depth_shift)
    return world, depth_validity(crop_depth, exclude_zero_depth)
