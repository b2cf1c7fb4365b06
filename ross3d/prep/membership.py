"""Object membership of (frame, patch) pairs: a 14x14-pixel patch of the 27x27 SigLIP grid belongs to an object
when at least half of its 196 pixels (98, as `int(14*14*0.5)` in the original) have a valid world point inside the
object's axis-aligned box (all three coordinates within [min, max]). Zero-depth pixels are points at the camera
centre, as the original counts them; with `--exclude-zero-depth` (their validity is False) they count as outside."""

from __future__ import annotations

import numpy as np

from ross3d.prep.geometry import PATCH_GRID, REGION

PATCH_PIXELS = REGION // PATCH_GRID  # 14
MIN_INSIDE = int(PATCH_PIXELS * PATCH_PIXELS * 0.5)


def _patch_bounds(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patch (V*729, patch-major): valid pixel count, and min and max (3,) of its valid points (+inf and -inf
    without any), one coordinate plane at a time: first over the 14 image rows of each row of patches (whole rows
    at once), then over each patch's 14 columns. Invalid pixels are masked only when there are any."""
    n_views = points.shape[0]
    ok = valid[:, :REGION, :REGION]
    # (view, patch row, pixel row in the patch, pixel column): the view axis stays apart, as merging it with the
    # patch rows would copy the strided 378 x 378 region
    rows = (n_views, PATCH_GRID, PATCH_PIXELS, REGION)
    n_ok = ok.reshape(rows).sum(axis=2).reshape(-1, PATCH_PIXELS).sum(axis=1)
    masked = not ok.all()
    lo = np.empty((n_views * PATCH_GRID * PATCH_GRID, 3), np.float32)
    hi = np.empty_like(lo)
    for c in range(3):
        plane = points[:, :REGION, :REGION, c]
        for out, reduce, empty in ((lo, np.minimum.reduce, np.inf), (hi, np.maximum.reduce, -np.inf)):
            values = np.where(ok, plane, np.float32(empty)) if masked else plane
            out[:, c] = reduce(reduce(values.reshape(rows), axis=2).reshape(-1, PATCH_PIXELS), axis=1)
    return n_ok, lo, hi


def _patches(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, V*729, 196) pixel coordinates, one plane per axis, and (V*729, 196) validity, patch-major over the
    378x378 region."""
    v = points.shape[0]
    grid = (v, PATCH_GRID, PATCH_PIXELS, PATCH_GRID, PATCH_PIXELS)
    planes = points[:, :REGION, :REGION].reshape(*grid, 3).transpose(5, 0, 1, 3, 2, 4)
    ok = valid[:, :REGION, :REGION].reshape(grid).transpose(0, 1, 3, 2, 4).reshape(-1, PATCH_PIXELS ** 2)
    return planes.reshape(3, -1, PATCH_PIXELS ** 2), ok


def membership(points: np.ndarray, valid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n_obj, V, 27, 27) bool for crop points (V, 384, 384, 3), validity (V, 384, 384) and boxes (n_obj, 6)
    (cx, cy, cz, dx, dy, dz); a NaN box has no member patches.

    Per-patch bounds of the valid pixels settle most patches at once (entirely inside or disjoint from a box);
    only patches that straddle a box face are counted pixel by pixel."""
    n_views = points.shape[0]
    n_ok, lo_patch, hi_patch = _patch_bounds(points, valid)
    planes, ok = _patches(points, valid)
    can = n_ok >= MIN_INSIDE
    out = np.zeros((len(boxes), n_views * PATCH_GRID * PATCH_GRID), bool)
    for k, box in enumerate(np.asarray(boxes, np.float32)):
        if not np.isfinite(box).all():
            continue
        lo, hi = box[:3] - box[3:] / 2, box[:3] + box[3:] / 2
        touches = can & (lo_patch <= hi).all(axis=1) & (hi_patch >= lo).all(axis=1)
        full = touches & (lo_patch >= lo).all(axis=1) & (hi_patch <= hi).all(axis=1)
        partial = np.flatnonzero(touches & ~full)
        inside = ok[partial]
        for c in range(3):  # pixel by pixel: all three coordinates within the box
            coord = planes[c, partial]
            inside &= coord >= lo[c]
            inside &= coord <= hi[c]
        out[k] = full
        out[k, partial] = inside.sum(axis=1) >= MIN_INSIDE
    return out.reshape(len(boxes), n_views, PATCH_GRID, PATCH_GRID)
