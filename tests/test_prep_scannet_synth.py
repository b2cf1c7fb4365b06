"""`prep scannet` on the procedural synthetic rooms (ross3d.synth): the BEV survives the tilted ceiling fragments
along the walls, has no holes inside the room, shows the floor wherever no object stands and object tops in their
vertex colours (barycentric interpolation computed here)."""

import numpy as np
import pytest

from ross3d.prep.bev import ceiling_cut, render_bev
from ross3d.synth.room import FLOOR_OBJECTS, build_room

FLOOR_RGB = np.array([150, 130, 110])  # the synth floor colour (vertex colours add N(0, 6) shading)


def expected_top_colour(room, obj, x, y):
    """Colour at (x, y) on the object's highest horizontal faces, by 2D barycentric interpolation."""
    verts = np.isin(room.segment_of_vertex, obj.segments)
    faces = room.faces[verts[room.faces].all(axis=1)]
    top = room.vertices[faces][:, :, 2].max()
    for f in faces[np.isclose(room.vertices[faces][:, :, 2], top).all(axis=1)]:
        a, b, c = room.vertices[f][:, :2]
        m = np.array([b - a, c - a]).T
        u, v = np.linalg.solve(m, np.array([x, y]) - a)
        if u >= -1e-9 and v >= -1e-9 and u + v <= 1 + 1e-9:
            return (1 - u - v) * room.colors[f[0]] + u * room.colors[f[1]] + v * room.colors[f[2]]
    raise AssertionError("no top face under the point")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bev_of_synth_room(seed):
    room = build_room(np.random.default_rng(seed))
    size = 128
    bev = render_bev(room.vertices, room.colors, room.faces, size)
    xmin, ymin, xmax, ymax = bev.bounds
    xs = xmin + (np.arange(size) + 0.5) * (xmax - xmin) / size
    ys = ymax - (np.arange(size) + 0.5) * (ymax - ymin) / size
    gx, gy = np.meshgrid(xs, ys)
    w, d, _ = room.size
    inside = (np.abs(gx) < w / 2 - 0.02) & (np.abs(gy) < d / 2 - 0.02)
    assert bev.valid[inside].all()  # no holes
    assert not bev.valid[(np.abs(gx) > w / 2 + 0.05) | (np.abs(gy) > d / 2 + 0.05)].any()
    assert (bev.rgb[~bev.valid] == 0).all()
    # open floor (including under the ceiling fragments along the walls) shows the floor, never the ceiling
    free = inside.copy()
    for obj in room.objects[6:]:  # 0 floor, 1-4 walls, 5 ceiling
        lo, hi = obj.box[:2] - obj.box[3:5] / 2 - 0.05, obj.box[:2] + obj.box[3:5] / 2 + 0.05
        free &= ~((gx >= lo[0]) & (gx <= hi[0]) & (gy >= lo[1]) & (gy <= hi[1]))
    assert free.sum() > 0.3 * inside.sum()
    assert (np.abs(bev.rgb[free].astype(int) - FLOOR_RGB) <= 30).all()
    cut, _ = ceiling_cut(room.vertices)
    checked = 0
    for obj in room.objects:
        if FLOOR_OBJECTS.get(obj.label, (None, None))[1] in ("box", "table") and obj.box[2] + obj.box[5] / 2 < cut:
            i, j = np.argmin(abs(ys - obj.box[1])), np.argmin(abs(xs - obj.box[0]))
            expected = expected_top_colour(room, obj, xs[j], ys[i])
            assert np.abs(bev.rgb[i, j] - expected).max() <= 1, obj.label
            checked += 1
    assert checked > 0


def test_prep_on_synth_scans(synth_root, tmp_path):
    import pyarrow.parquet as pq
    import zarr

    from ross3d.prep.options import PrepOptions
    from ross3d.prep.run import prep_scannet

    report = prep_scannet(synth_root / "scans", tmp_path / "prep", PrepOptions(num_frames=4, bev_size=96))
    assert report.failed == {} and len(report.ok) == 2
    scenes = pq.read_table(tmp_path / "prep" / "scenes.parquet").to_pylist()
    assert all(r["aligned"] and r["n_frames_kept"] == 6 for r in scenes)
    objects = pq.read_table(tmp_path / "prep" / "objects.parquet").to_pylist()
    for scene_id in report.ok:
        arrays = zarr.open_group(tmp_path / "prep" / "scenes" / scene_id / "arrays.zarr", mode="r")
        n_obj = sum(o["scene_id"] == scene_id for o in objects)
        assert arrays["membership/max-coverage"].shape == (n_obj, 4, 27, 27)
        assert arrays["membership/uniform"][:].any()
        assert 0.3 < arrays["bev/valid"][:].mean() < 1.0
