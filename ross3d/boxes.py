"""Axis-aligned 3D boxes (cx, cy, cz, dx, dy, dz) in the aligned ScanNet frame, and their IoU as the original's
`box3d_iou`: inter / (V1 + V2 - inter + 1e-8), so a degenerate box has IoU about 0."""

from __future__ import annotations

import numpy as np


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 6) boxes with (M, 6) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 6)
    b = np.asarray(b, np.float64).reshape(-1, 6)
    lo_a, hi_a = a[:, None, :3] - a[:, None, 3:] / 2, a[:, None, :3] + a[:, None, 3:] / 2
    lo_b, hi_b = b[None, :, :3] - b[None, :, 3:] / 2, b[None, :, :3] + b[None, :, 3:] / 2
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None).prod(-1)
    return inter / (a[:, None, 3:].prod(-1) + b[None, :, 3:].prod(-1) - inter + 1e-8)


def aabb_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of (N, 6) boxes."""
    return pairwise_iou(box, boxes)[0]
