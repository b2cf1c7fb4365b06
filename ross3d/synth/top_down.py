"""A plain top-down orthographic z-buffer rasteriser for the test-data generator's released-style BEV, independent
of ross3d's BEV renderer (ross3d.prep.bev, ray casting through open3d) that the compatibility tests compare
against it.

Every pixel centre (docs/data-format.md's convention: column j at x = xmin + (j + 0.5)(xmax - xmin)/S, row i at
y = ymax - (i + 0.5)(ymax - ymin)/S) takes the highest point at or below `z_max` of the triangles whose vertical
projection contains it (edges included), coloured by the barycentric mix of the triangle's vertex colours, rounded;
pixels over no triangle stay exact black. Vertical triangles (no projected area) are skipped."""

from __future__ import annotations

import numpy as np


def pixel_grid(bounds: tuple[float, float, float, float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """x of each column and y of each row of the pixel centres."""
    xmin, ymin, xmax, ymax = bounds
    centres = (np.arange(size) + 0.5) / size
    return xmin + centres * (xmax - xmin), ymax - centres * (ymax - ymin)


def rasterise_top_down(vertices: np.ndarray, colors: np.ndarray, faces: np.ndarray,
                       bounds: tuple[float, float, float, float], size: int, z_max: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 colours and (S, S) bool coverage of the triangles seen from above, cut at z_max."""
    xs, ys = pixel_grid(bounds, size)
    height = np.full((size, size), -np.inf)
    rgb = np.zeros((size, size, 3), np.uint8)
    for tri in np.asarray(faces):
        p = vertices[tri].astype(np.float64)
        (x0, y0), (x1, y1), (x2, y2) = p[:, :2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        cols = np.flatnonzero((xs >= p[:, 0].min()) & (xs <= p[:, 0].max()))
        rows = np.flatnonzero((ys >= p[:, 1].min()) & (ys <= p[:, 1].max()))
        if not len(cols) or not len(rows):
            continue
        gx, gy = np.meshgrid(xs[cols], ys[rows])
        w1 = ((gx - x0) * (y2 - y0) - (x2 - x0) * (gy - y0)) / area
        w2 = ((x1 - x0) * (gy - y0) - (gx - x0) * (y1 - y0)) / area
        w0 = 1 - w1 - w2
        z = w0 * p[0, 2] + w1 * p[1, 2] + w2 * p[2, 2]
        patch = np.ix_(rows, cols)
        eps = -1e-9
        wins = (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & (z <= z_max) & (z > height[patch])
        if not wins.any():
            continue
        mixed = (w0[..., None] * colors[tri[0]] + w1[..., None] * colors[tri[1]] + w2[..., None] * colors[tri[2]])
        height[patch] = np.where(wins, z, height[patch])
        rgb[patch] = np.where(wins[..., None], np.clip(np.rint(mixed), 0, 255).astype(np.uint8), rgb[patch])
    return rgb, np.isfinite(height)
