"""Object membership of (frame, patch) pairs: a 14x14-pixel patch of the 27x27 SigLIP grid belongs to an object
when at least half of its 196 pixels (98, as `int(14*14*0.5)` in the original) have a valid world point inside the
object's axis-aligned box (all three coordinates within [min, max]); pixels without depth count as outside."""

from __future__ import annotations

import numpy as np

from ross3d.prep.geometry import PATCH_GRID, REGION

PATCH_PIXELS = REGION // PATCH_GRID  # 14
MIN_INSIDE = int(PATCH_PIXELS * PATCH_PIXELS * 0.5)


def membership(points: np.ndarray, valid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n_obj, V, 27, 27) bool for crop points (V, 384, 384, 3), validity (V, 384, 384) and boxes (n_obj, 6)
    (cx, cy, cz, dx, dy, dz); a NaN box has no member patches."""
    n_views = points.shape[0]
    out = np.zeros((len(boxes), n_views, PATCH_GRID, PATCH_GRID), bool)
    pts = points[:, :REGION, :REGION]
    ok = valid[:, :REGION, :REGION]
    big = np.float32(np.inf)
    lo_view = np.where(ok[..., None], pts, big).reshape(n_views, -1, 3).min(axis=1)
    hi_view = np.where(ok[..., None], pts, -big).reshape(n_views, -1, 3).max(axis=1)
    for k, box in enumerate(np.asarray(boxes, np.float32)):
        if not np.isfinite(box).all():
            continue
        lo, hi = box[:3] - box[3:] / 2, box[:3] + box[3:] / 2
        views = np.flatnonzero(((lo_view <= hi) & (hi_view >= lo)).all(axis=1))
        if len(views) == 0:
            continue
        p = pts[views]
        inside = ok[views] & ((p >= lo) & (p <= hi)).all(axis=-1)
        counts = inside.reshape(len(views), PATCH_GRID, PATCH_PIXELS, PATCH_GRID, PATCH_PIXELS).sum(axis=(2, 4))
        out[k, views] = counts >= MIN_INSIDE
    return out
