"""Top-down orthographic BEV of the aligned mesh by ray casting, with the ceiling removed, plus a PNG preview.

Ceiling rule (robust to tilted ceiling fragments hanging 0.3-0.6 m below the mesh top along the walls):
- floor = 2nd and top = 99.5th percentile of vertex z (a few stray vertices above the ceiling do not move the
  cut), height = top - floor;
- the cut is at `max(top - 0.8 m, floor + 0.5 * height)`: rays start at the cut and look straight down, so
  everything above it is ignored and every pixel over geometry below the cut shows the top-most surface there;
- faces whose normal points down (n_z < -0.5) and whose centroid lies in the upper half of the room are dropped as
  well (a ceiling piece hanging lower than the cut faces down; undersides of furniture are hidden from above anyway).
Pixel convention (docs/data-format.md, arrays.zarr): rgb[i, j] covers x = xmin + (j+0.5)(xmax-xmin)/S, y = ymax - (i+0.5)(ymax-ymin)/S;
the square is centred on the xy extent of all vertices with a margin of 2% of its side per side.
Background is exact black and `valid` is False there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CUT_BELOW_TOP = 0.8
MARGIN = 0.02
DOWN_NZ = -0.5


@dataclass
class Bev:
    rgb: np.ndarray  # (S, S, 3) uint8
    valid: np.ndarray  # (S, S) bool
    bounds: np.ndarray  # (4,) float32 xmin, ymin, xmax, ymax


def square_bounds(vertices: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """xmin, ymin, xmax, ymax of a square around the xy extent with `margin` of the side on each side."""
    lo = np.array([vertices[:, 0].min(), vertices[:, 1].min()])  # per column: a reduction over rows of 2 is slow
    hi = np.array([vertices[:, 0].max(), vertices[:, 1].max()])
    centre, extent = (lo + hi) / 2, max(float((hi - lo).max()), 1e-3)
    half = extent / 2 / (1 - 2 * margin)
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], np.float64)


def ceiling_cut(vertices: np.ndarray) -> tuple[float, float]:
    """(cut height, mid height) of the rule in the module docstring."""
    z = vertices[:, 2]
    floor, top = (float(v) for v in np.percentile(z, [2, 99.5]))
    return max(top - CUT_BELOW_TOP, floor + 0.5 * (top - floor)), floor + 0.5 * (top - floor)


def kept_faces(vertices: np.ndarray, faces: np.ndarray, cut: float, mid: float) -> np.ndarray:
    """Faces that can be seen from the cut downwards: not entirely above it, not downward-facing up high. The
    corner heights decide the first test for every face; normals are computed only for the faces still kept whose
    centroid is up high."""
    z = np.ascontiguousarray(vertices[:, 2])[faces]
    keep = np.minimum(np.minimum(z[:, 0], z[:, 1]), z[:, 2]) <= cut
    high = np.flatnonzero(keep & (z.mean(axis=1) > mid))
    tri = vertices[faces[high]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1)
    nz = np.divide(normal[:, 2], length, out=np.zeros_like(length), where=length > 0)
    keep[high[nz < DOWN_NZ]] = False
    return faces[keep]


def pixel_centres(bounds: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """x of each column and y of each row under the pixel convention of docs/data-format.md."""
    xmin, ymin, xmax, ymax = bounds
    steps = (np.arange(size) + 0.5) / size
    return xmin + steps * (xmax - xmin), ymax - steps * (ymax - ymin)


def render_bev(vertices: np.ndarray, colors: np.ndarray, faces: np.ndarray, size: int) -> Bev:
    """Render the aligned mesh (float64 vertices, uint8 colours, int32 faces) top-down at size x size."""
    from ross3d.render import MeshRaycaster

    bounds = square_bounds(vertices)
    cut, mid = ceiling_cut(vertices)
    faces = kept_faces(vertices, faces, cut, mid)
    rgb = np.zeros((size, size, 3), np.uint8)
    valid = np.zeros((size, size), bool)
    if len(faces):
        xs, ys = pixel_centres(bounds, size)
        gx, gy = np.meshgrid(xs, ys)
        origins = np.stack([gx, gy, np.full_like(gx, cut)], axis=-1).reshape(-1, 3).astype(np.float32)
        hits = MeshRaycaster(vertices, faces, colors).cast(origins, np.array([0, 0, -1], np.float32))
        valid = np.asarray(hits.hit).reshape(size, size)
        rgb = np.where(valid[..., None], np.asarray(hits.rgb).reshape(size, size, 3), 0).astype(np.uint8)
    return Bev(rgb, valid, bounds.astype(np.float32))


def write_preview(bev: Bev, path: Path) -> None:
    """The BEV as a PNG (black background)."""
    from PIL import Image

    Image.fromarray(bev.rgb).save(path)
