"""Prep's BEV render against the export's released-style view_0.jpg (ross3d.synth.posed_export), which an
independent z-buffer rasteriser drew from the scene description and JPEG (quality 95, no chroma subsampling) then
blurred a little; the tolerances, and why:

- where the cut plane slices through a closed object (a picture or door on a wall, a tall bookshelf) the first
  surface below the cut is one of two coplanar faces (the object's bottom and the floor) or a downward-facing face
  that prep's ceiling rule drops (docs/data-format.md) and the rasteriser keeps: those pixels (the object's footprint,
  `ambiguous_pixels`) are not compared;
- everywhere else both renderers see the same surface and barycentric colour, so only JPEG loss remains: a mean
  absolute difference below JPEG_MEAN levels (measured 0.52-0.54 on the 432 px synthetic rooms, 0.53 on the 64 px
  hand-made rooms) and no pixel differing by more than SURFACE levels (JPEG's largest error here is 18 levels,
  14 at 64 px: a larger difference is another surface, not JPEG).
"""

from __future__ import annotations

import numpy as np

from ross3d.synth.description import SceneDescription
from ross3d.synth.posed_export import bev_bounds, bev_cut
from ross3d.synth.top_down import pixel_grid

JPEG_MEAN = 1.5
SURFACE = 32


def ambiguous_pixels(scene: SceneDescription, size: int) -> np.ndarray:
    """(S, S) bool: pixel centres over the footprint of an object whose box extends both below and above the cut."""
    xs, ys = pixel_grid(bev_bounds(scene), size)
    gx, gy = np.meshgrid(xs, ys)
    cut, out = bev_cut(scene), np.zeros((size, size), bool)
    for box in scene.object_boxes:
        if box is None:
            continue
        lo, hi = box[:3] - box[3:] / 2, box[:3] + box[3:] / 2
        if lo[2] < cut < hi[2]:
            out |= (gx >= lo[0]) & (gx <= hi[0]) & (gy >= lo[1]) & (gy <= hi[1])
    return out


def bev_agreement(released: np.ndarray, rendered: np.ndarray, ambiguous: np.ndarray) -> dict[str, float]:
    """Mean absolute level difference and the number of pixels differing by more than SURFACE levels in some
    channel, outside `ambiguous`; and the share of pixels that are ambiguous."""
    diff = np.abs(released.astype(int) - rendered.astype(int))[~ambiguous]
    return {"mean": float(diff.mean()), "max": int(diff.max()), "other_surface": int((diff.max(-1) > SURFACE).sum()),
            "ambiguous": float(ambiguous.mean())}
