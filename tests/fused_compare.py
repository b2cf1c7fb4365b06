"""A prep with fused meshes against one with the scan meshes, for the fused-mesh tests and bench/prep.py, written
from the documented contracts alone (docs/data-format.md):
- `compare`: two BEVs of one scene in world coordinates (arrays.zarr pixel convention: rgb[i, j] covers
  x = xmin + (j + 0.5) w / S, y = ymax - (i + 0.5) h / S): each valid pixel centre of one BEV is looked up in the
  pixel of the other that contains it;
- `real_voxels_covered`: the 0.1 m voxels of the scan's aligned mesh that a strategy's selected frames see (their
  stored millimetre depth unprojected with the depth intrinsics and axis_align @ pose; zero depth skipped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _lookup(bounds_of, size_of, into_bounds, size_into):
    """Row and column of the `into` pixel containing each pixel centre of the `of` BEV; -1 when outside."""
    xmin, ymin, xmax, ymax = np.asarray(bounds_of, np.float64)
    steps = (np.arange(size_of) + 0.5) / size_of
    x, y = np.meshgrid(xmin + steps * (xmax - xmin), ymax - steps * (ymax - ymin))
    xmin, ymin, xmax, ymax = np.asarray(into_bounds, np.float64)
    j = np.floor((x - xmin) / (xmax - xmin) * size_into).astype(np.int64)
    i = np.floor((ymax - y) / (ymax - ymin) * size_into).astype(np.int64)
    outside = (i < 0) | (i >= size_into) | (j < 0) | (j >= size_into)
    return np.where(outside, -1, i), np.where(outside, -1, j)


def compare(test_rgb, test_valid, test_bounds, ref_rgb, ref_valid, ref_bounds) -> dict[str, float]:
    """precision: share of the test BEV's valid pixels whose centre lies on a valid reference pixel; recall: share
    of the reference's valid pixels whose centre lies on a valid test pixel; iou: valid area both have over the area
    either has (|both| taken as the mean of the two counts of agreeing pixels, each counted in its own BEV's pixels
    scaled to the reference's pixel area); colour_error: mean absolute difference in levels over the RGB channels of
    the test pixels that agree."""
    s_test, s_ref = len(test_valid), len(ref_valid)
    i, j = _lookup(test_bounds, s_test, ref_bounds, s_ref)
    on_ref = test_valid & (i >= 0)
    agree = np.zeros_like(test_valid)
    agree[on_ref] = ref_valid[i[on_ref], j[on_ref]]
    ri, rj = _lookup(ref_bounds, s_ref, test_bounds, s_test)
    on_test = ref_valid & (ri >= 0)
    covered = np.zeros_like(ref_valid)
    covered[on_test] = test_valid[ri[on_test], rj[on_test]]
    pixel_area = lambda b, s: (b[2] - b[0]) * (b[3] - b[1]) / s ** 2  # noqa: E731
    a_test, a_ref = pixel_area(np.asarray(test_bounds, np.float64), s_test), pixel_area(np.asarray(ref_bounds,
                                                                                                  np.float64), s_ref)
    both = (agree.sum() * a_test + covered.sum() * a_ref) / 2
    either = test_valid.sum() * a_test + ref_valid.sum() * a_ref - both
    diff = np.abs(test_rgb[agree].astype(np.int64) - ref_rgb[i[agree], j[agree]].astype(np.int64))
    return {"precision": float(agree.sum() / max(test_valid.sum(), 1)),
            "recall": float(covered.sum() / max(ref_valid.sum(), 1)),
            "iou": float(both / either) if either > 0 else 0.0,
            "colour_error": float(diff.mean()) if diff.size else float("nan")}


def real_voxels_covered(scans: Path, prep: Path, scene_id: str, strategy: str) -> int:
    """Voxels of the scene's real aligned mesh seen by the frames `strategy` selected in `prep`."""
    import pyarrow.parquet as pq
    import zarr

    from ross3d.prep.geometry import MeshVoxels, unproject
    from ross3d.scannet.scene import read_axis_alignment, read_mesh, scan_paths, transform_points

    paths = scan_paths(scans, scene_id)
    axis, _ = read_axis_alignment(paths.meta)
    voxels = MeshVoxels(transform_points(axis, read_mesh(paths.mesh).vertices))
    row = next(r for r in pq.read_table(prep / "scenes.parquet").to_pylist() if r["scene_id"] == scene_id)
    frames = pq.read_table(prep / "scenes" / scene_id / "frames.parquet").to_pydict()
    picked = {r["frame_idx"] for r in pq.read_table(prep / "selections.parquet").to_pylist()
              if r["scene_id"] == scene_id and r["strategy"] == strategy}
    depth = zarr.open_group(prep / "scenes" / scene_id / "arrays.zarr", mode="r")["depth"]
    k = np.asarray(row["intrinsic_depth"], np.float64).reshape(4, 4)
    seen: set[int] = set()
    for pos, (idx, pose) in enumerate(zip(frames["frame_idx"], frames["pose"])):
        if idx in picked:
            world = unproject(depth[pos], k, axis @ np.asarray(pose, np.float64).reshape(4, 4))
            seen |= set(voxels.ids(world.reshape(-1, 3)[depth[pos].reshape(-1) > 0]).tolist())
    return len(seen)
