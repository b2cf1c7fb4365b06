"""Pure pieces of `prep scannet`: selection against a set-based greedy, geometry and membership against direct
per-pixel numpy, the BEV face filter and pixel convention."""

import hashlib

import numpy as np
import pytest

from ross3d.prep import geometry, selection
from ross3d.prep.bev import ceiling_cut, kept_faces, pixel_centres, square_bounds
from ross3d.prep.frames import read_depth
from ross3d.prep.membership import _patch_bounds, membership
from ross3d.prep.options import PrepOptions
from ross3d.errors import ConfigError


def reference_greedy(voxel_sets, num_frames, priority):
    """Straightforward set-based greedy: max new voxels, ties to the lowest priority value."""
    sets = [set(v.tolist()) for v in voxel_sets]
    used, picks, gains = set(), [], []
    remaining = list(range(len(sets)))
    while remaining and len(picks) < num_frames:
        best = max(remaining, key=lambda f: (len(sets[f] - used), -priority[f]))
        picks.append(best)
        gains.append(len(sets[best] - used))
        used |= sets[best]
        remaining.remove(best)
    return picks, gains


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_max_coverage_equals_set_based_greedy(seed):
    rng = np.random.default_rng(seed)
    n_voxels = 60  # small universe: many ties and zero gains
    sets = [np.unique(rng.integers(0, n_voxels, rng.integers(0, 25))) for _ in range(40)]
    sel = selection.max_coverage(sets, n_voxels, 32, seed)
    picks, gains = reference_greedy(sets, 32, selection.tie_priority(len(sets), seed))
    assert sel.picks.tolist() == picks
    assert sel.gains.tolist() == gains
    assert sel.gains.sum() == len(set(np.concatenate(sets).tolist()))


def test_max_coverage_seed_changes_only_ties():
    sets = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5]), np.array([0, 1, 2, 3, 4])]
    a = selection.max_coverage(sets, 6, 4, 0)
    b = selection.max_coverage(sets, 6, 4, 3)
    assert a.picks[0] == b.picks[0] == 3 and a.gains.tolist() == b.gains.tolist() == [5, 1, 0, 0]


def test_max_coverage_fewer_candidates_repeats_with_zero_gain():
    sets = [np.array([0, 1, 2]), np.array([3])]
    sel = selection.max_coverage(sets, 4, 5, 0)
    assert sel.picks.tolist() == [0, 1, 0, 1, 0] and sel.gains.tolist() == [3, 1, 0, 0, 0]


def test_uniform_is_the_original_linspace_and_gains_count_new_voxels():
    assert selection.uniform_picks(100, 32).tolist() == np.linspace(0, 99, 32, dtype=int).tolist()
    assert selection.uniform_picks(3, 5).tolist() == [0, 0, 1, 1, 2]
    sets = [np.array([0, 1]), np.array([1, 2]), np.array([2, 3])]
    sel = selection.uniform(sets, 4, 3)
    assert sel.picks.tolist() == [0, 1, 2] and sel.gains.tolist() == [2, 1, 1]


def test_unproject_matches_per_pixel_formula():
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 4000, (6, 8)).astype(np.uint16)
    k = np.array([[50.0, 0, 3.7, 0], [0, 48.0, 2.9, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = [1, -2, 0.5]
    world = geometry.unproject(depth, k, pose, 1000.0)
    for v in range(6):
        for u in range(8):
            z = depth[v, u] / 1000.0
            p = pose @ [(u - 3.7) * z / 50.0, (v - 2.9) * z / 48.0, z, 1.0]
            np.testing.assert_allclose(world[v, u], p[:3], atol=1e-5)


def _pose(rng, shift):
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = shift
    return pose


def test_unproject_and_crop_points_take_a_batch_of_frames():
    rng = np.random.default_rng(3)
    h, w = 48, 64
    depth = rng.integers(0, 4000, (2, h, w)).astype(np.uint16)
    depth[0, :5] = 0
    k = np.array([[57.0, 0, 31.5, 0], [0, 57.0, 23.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    poses = np.stack([_pose(rng, [1, -2, 0.5]), _pose(rng, [-0.3, 0.7, 1.4])])
    world = geometry.unproject(depth, k, poses, 1000.0)
    points, valid = geometry.frame_crop_points(depth, k, poses, 1000.0, exclude_zero_depth=True)
    assert geometry.frame_crop_points(depth, k, poses, 1000.0)[1].all()  # by default every pixel is a point
    assert world.shape == (2, h, w, 3) and points.shape == (2, 384, 384, 3) and valid.shape == (2, 384, 384)
    rows = (np.arange(384) * h / 384).astype(int)  # nearest resize to 512x384, then columns 64..447
    cols = ((np.arange(384) + 64) * w / 512).astype(int)
    v, u = np.mgrid[0:h, 0:w]
    for f in range(2):
        z = depth[f] / 1000.0
        cam = np.stack([(u - 31.5) * z / 57.0, (v - 23.5) * z / 57.0, z, np.ones_like(z)], -1)
        expected = (cam @ poses[f].T)[..., :3]
        np.testing.assert_allclose(world[f], expected, atol=2e-5)
        np.testing.assert_allclose(points[f], expected[rows][:, cols], atol=2e-5)
        np.testing.assert_array_equal(valid[f], depth[f][rows][:, cols] > 0)


def test_crop_map_is_nearest_resize_then_centre_crop():
    h, w = 48, 64
    values = np.arange(h * w, dtype=np.float32).reshape(h, w, 1).repeat(3, -1)
    crop = geometry.crop_map(values)
    new_w = int(w * 384 / h)  # 512
    left = (new_w - 384) // 2
    rows = (np.arange(384) * h / 384).astype(int)
    cols = ((np.arange(384) + left) * w / new_w).astype(int)
    np.testing.assert_array_equal(crop[..., 0], values[rows][:, cols, 0])


def test_cell_means_exclude_invalid_and_fall_back_to_camera():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(384, 384, 3)).astype(np.float32)
    ok = rng.random((384, 384)) > 0.3
    ok[:27, :27] = False  # first cell without depth
    cam = np.array([9.0, 8.0, 7.0])
    means = geometry.cell_means(pts, ok, 14, cam)
    np.testing.assert_allclose(means[0, 0], cam)
    for i, j in [(0, 1), (5, 9), (13, 13)]:
        cell = pts[i * 27:(i + 1) * 27, j * 27:(j + 1) * 27][ok[i * 27:(i + 1) * 27, j * 27:(j + 1) * 27]]
        np.testing.assert_allclose(means[i, j], cell.mean(axis=0), atol=1e-5)


def test_cell_means_of_a_batch_with_and_without_zero_depth():
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(2, 384, 384, 3)).astype(np.float32)
    ok = rng.random((2, 384, 384)) > 0.3
    ok[1, 27:54, :27] = False  # frame 1, cell (1, 0) without depth
    cams = np.array([[1.0, 2.0, 3.0], [9.0, 8.0, 7.0]])
    pts[~ok] = np.repeat(cams[:, None], 384 * 384, 1).reshape(2, 384, 384, 3)[~ok]  # zero depth: camera centre
    excluded = geometry.cell_means(pts, ok, 14, cams)
    included = geometry.cell_means(pts, np.ones_like(ok), 14, cams)  # depth_validity of the default
    assert excluded.shape == included.shape == (2, 14, 14, 3)
    np.testing.assert_allclose(excluded[1, 1, 0], cams[1])
    np.testing.assert_allclose(included[1, 1, 0], cams[1], atol=1e-5)
    for f, i, j in [(0, 0, 0), (0, 5, 9), (1, 13, 13), (1, 2, 0)]:
        cell = pts[f, i * 27:(i + 1) * 27, j * 27:(j + 1) * 27]
        keep = ok[f, i * 27:(i + 1) * 27, j * 27:(j + 1) * 27]
        np.testing.assert_allclose(excluded[f, i, j], cell[keep].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(included[f, i, j], cell.reshape(-1, 3).mean(axis=0), atol=1e-5)


def test_discrete_voxels_clamp_offset_round():
    coords = np.array([[0.0, 0.0, 0.0], [-20.0, 20.0, 6.0], [0.25, -0.35, 1.04]], np.float32)
    vox = geometry.discrete_voxels(coords)
    assert vox.dtype == np.int16
    assert vox.tolist() == [[150, 150, 50], [0, 300, 100], [152, 146, 60]]  # 152.5 -> 152, 146.5 -> 146


def test_mesh_voxel_ids_are_sorted_triples_hit_by_points():
    verts = np.array([[0.0, 0, 0], [0.1, 0, 0], [1.0, 1.0, 1.0], [-0.3, 0.52, 0.0], [0.04, 0.0, 0.0]])
    mesh = geometry.MeshVoxels(verts)
    triples = sorted({tuple(v) for v in np.round(verts.astype(np.float32) / np.float32(0.1)).astype(int).tolist()})
    assert mesh.count == len(triples) == 4
    pts = np.array([[0.01, 0.0, 0.0], [1.04, 0.96, 1.0], [5.0, 5.0, 5.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    assert mesh.ids(pts).tolist() == [triples.index((0, 0, 0)), triples.index((10, 10, 10))]


def test_mesh_voxel_ids_per_frame_drop_invalid_points():
    verts = np.array([[0.0, 0, 0], [0.1, 0, 0], [1.0, 1.0, 1.0], [-0.3, 0.52, 0.0]])
    mesh = geometry.MeshVoxels(verts)
    triples = sorted({tuple(v) for v in np.round(verts.astype(np.float32) / np.float32(0.1)).astype(int).tolist()})
    pts = np.array([[[0.01, 0.0, 0.0], [1.04, 0.96, 1.0], [-9.0, 0.0, 0.0]],
                    [[0.12, 0.0, 0.0], [-0.3, 0.5, 0.04], [0.0, 0.0, 0.0]]], np.float32)
    valid = np.array([[True, True, True], [True, True, False]])
    got = mesh.frame_ids(pts, valid)
    assert [g.tolist() for g in got] == [[triples.index((0, 0, 0)), triples.index((10, 10, 10))],
                                        [triples.index((-3, 5, 0)), triples.index((1, 0, 0))]]


def test_membership_matches_per_patch_count():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-1, 1, (2, 384, 384, 3)).astype(np.float32)
    pts[0, :140, :140] = 0.1  # a block of 10x10 patches entirely inside the box
    ok = rng.random((2, 384, 384)) > 0.1
    boxes = np.array([[0.0, 0.0, 0.0, 0.6, 0.6, 0.6], [np.nan] * 6, [5, 5, 5, 1, 1, 1]], np.float32)
    got = membership(pts, ok, boxes)
    assert got.shape == (3, 2, 27, 27)
    assert got[0, 0, :10, :10].all() and not got[1].any() and not got[2].any()
    lo, hi = boxes[0, :3] - 0.3, boxes[0, :3] + 0.3
    for v, i, j in [(0, 3, 4), (0, 20, 20), (1, 0, 0), (1, 26, 13)]:
        p = pts[v, i * 14:(i + 1) * 14, j * 14:(j + 1) * 14]
        inside = ok[v, i * 14:(i + 1) * 14, j * 14:(j + 1) * 14] & ((p >= lo) & (p <= hi)).all(-1)
        assert got[0, v, i, j] == (inside.sum() >= 98)


def test_membership_hand_cases_at_the_half_patch_threshold():
    """One view, every pixel outside the box except in four patches of the first row, counted by hand: 196 inside;
    exactly 98 inside (the original's int(14*14*0.5)); 97 inside; 196 inside of which 99 have no valid point."""
    pts = np.full((1, 384, 384, 3), 9.0, np.float32)
    ok = np.ones((1, 384, 384), bool)
    first = np.arange(196).reshape(14, 14)  # row-major pixel number inside a patch
    pts[0, :14, 0:14] = 0.0
    pts[0, :14, 14:28][first < 98] = 0.0
    pts[0, :14, 28:42][first < 97] = 0.0
    pts[0, :14, 42:56] = 0.0
    ok[0, :14, 42:56][first < 99] = False
    got = membership(pts, ok, np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]], np.float32))
    expected = np.zeros((1, 1, 27, 27), bool)
    expected[0, 0, 0, 0] = expected[0, 0, 0, 1] = True
    np.testing.assert_array_equal(got, expected)


def test_bev_pixel_convention_and_square_bounds():
    verts = np.array([[0.0, 0, 0], [4.0, 2.0, 1.0]])
    xmin, ymin, xmax, ymax = square_bounds(verts, margin=0.05)
    assert np.isclose(xmax - xmin, ymax - ymin) and np.isclose((xmax - xmin) * 0.9, 4.0)
    assert np.isclose((xmin + xmax) / 2, 2.0) and np.isclose((ymin + ymax) / 2, 1.0)
    xs, ys = pixel_centres(np.array([0.0, 0.0, 4.0, 4.0]), 4)
    assert xs.tolist() == [0.5, 1.5, 2.5, 3.5] and ys.tolist() == [3.5, 2.5, 1.5, 0.5]


def test_bev_face_filter_drops_ceiling_and_hanging_fragments():
    # floor (up), table top (up), ceiling (down, at the top), fragment (down, 0.5 m below the top)
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0.7], [1, 0, 0.7], [0, 1, 0.7],
                      [0, 0, 2.5], [0, 1, 2.5], [1, 0, 2.5], [0, 0, 2.0], [0, 1, 2.0], [1, 0, 2.0]], float)
    faces = np.arange(12, dtype=np.int32).reshape(4, 3)
    cut, mid = ceiling_cut(verts)
    assert cut == pytest.approx(1.7)
    assert kept_faces(verts, faces, cut, mid).tolist() == faces[:2].tolist()


def test_options_fingerprint_and_validation():
    # the documented fingerprint of a default `.sens` run: sha256 of the sorted-key JSON of the format version and
    # the options, 16 hex digits (a change here re-prepares every user's PREP_DIR)
    text = ('{"bev_size": 432, "exclude_zero_depth": false, "format_version": 1, "frame_stride": 10, '
            '"max_coverage_order": "frame", "num_frames": 32, "seed": 0}')
    assert PrepOptions().fingerprint() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert PrepOptions(num_frames=16).fingerprint() != PrepOptions().fingerprint()
    with pytest.raises(ConfigError, match="frame-stride"):
        PrepOptions(frame_stride=0)


def test_fusion_options_leave_plain_fingerprints_alone():
    """Without --fuse-mesh the fingerprint is the sha256 of the options as they were before fusion existed, so
    committed scenes are reused; with it the fusion options enter the fingerprint and are checked."""
    import hashlib
    import json

    before = {"format_version": 1, "frame_stride": 10, "num_frames": 32, "bev_size": 432, "seed": 0,
              "exclude_zero_depth": False, "max_coverage_order": "frame"}
    assert PrepOptions().fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert PrepOptions(fuse_voxel_size=0.02).fingerprint() == PrepOptions().fingerprint()
    fused = PrepOptions(fuse_mesh=True)
    assert fused.to_dict()["fuse_trunc"] == 0.12 and fused.fingerprint() != PrepOptions().fingerprint()
    assert PrepOptions(fuse_mesh=True, fuse_voxel_size=0.02).fingerprint() != fused.fingerprint()
    with pytest.raises(ConfigError, match="fuse-trunc"):
        PrepOptions(fuse_mesh=True, fuse_voxel_size=0.05, fuse_trunc=0.01)


def test_patch_bounds_by_hand_with_and_without_invalid_pixels():
    """x = pixel column, y = pixel row, z = view: patch (i, j) of view v spans x 14j..14j+13, y 14i..14i+13, z v."""
    rows, cols = np.mgrid[0:384, 0:384].astype(np.float32)
    pts = np.stack([np.stack([cols, rows, np.full_like(rows, v)], -1) for v in range(2)])
    ok = np.ones((2, 384, 384), bool)
    n_ok, lo, hi = _patch_bounds(pts, ok)  # every pixel valid: nothing masked
    assert n_ok.shape == (2 * 729,) and (n_ok == 196).all()
    patch = 729 + 3 * 27 + 5  # view 1, patch row 3, patch column 5
    assert lo[patch].tolist() == [70.0, 42.0, 1.0] and hi[patch].tolist() == [83.0, 55.0, 1.0]
    assert lo[26].tolist() == [364.0, 0.0, 0.0] and hi[26].tolist() == [377.0, 13.0, 0.0]  # the region ends at 378
    ok[0, :14, 13] = False  # patch (0, 0) of view 0 without its last column
    ok[1, 14:28, 14:28] = False  # patch (1, 1) of view 1 without any valid pixel
    n_ok, lo, hi = _patch_bounds(pts, ok)
    assert n_ok[0] == 182 and lo[0].tolist() == [0.0, 0.0, 0.0] and hi[0].tolist() == [12.0, 13.0, 0.0]
    assert n_ok[729 + 28] == 0 and lo[729 + 28].tolist() == [np.inf] * 3 and hi[729 + 28].tolist() == [-np.inf] * 3
    assert n_ok[1] == 196 and hi[1].tolist() == [27.0, 13.0, 0.0]


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("side", [-2.0, 2.0])
def test_membership_needs_every_coordinate_inside(axis, side):
    """A patch with 97 pixels at the box centre and 99 outside along one axis only, below or above the box,
    straddles the box (its bounds overlap it), so its pixels are counted: 97 < 98, not a member; with 98 it is."""
    pts = np.full((1, 384, 384, 3), 9.0, np.float32)
    first = np.arange(196).reshape(14, 14)
    out = np.zeros(3, np.float32)
    out[axis] = side  # outside the box [-0.5, 0.5]^3 along `axis` only
    for j, n_inside in ((0, 97), (1, 98)):
        patch = pts[0, :14, 14 * j:14 * (j + 1)]
        patch[:] = out
        patch[first < n_inside] = 0.0
    got = membership(pts, np.ones((1, 384, 384), bool), np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]], np.float32))
    assert got[0, 0, 0, :3].tolist() == [False, True, False] and got.sum() == 1


def test_mesh_voxel_ids_exact_on_a_grid_beyond_float32_integers():
    """Vertices 236.3 m apart: voxels (0, 0, 0) and (2363, 2363, 0), a padded grid of 2366 x 2366 x 3 cells
    (16,793,868 > 2**24). The far voxel's cell (2364, 2364, 1) is 2364 * 7098 + 2364 * 3 + 1 = 16,786,765, odd
    and above 2**24: a float32 would round it to a neighbouring, empty cell."""
    mesh = geometry.MeshVoxels(np.array([[0.0, 0.0, 0.0], [236.3, 236.3, 0.0]]))
    assert mesh.shape == (2366, 2366, 3) and mesh.count == 2
    pts = np.array([[[236.3, 236.3, 0.0], [236.2, 236.3, 0.0], [0.02, -0.04, 0.0]]], np.float32)
    assert mesh.frame_ids(pts, np.ones((1, 3), bool))[0].tolist() == [0, 1]
    assert mesh.ids(pts[0, :2]).tolist() == [1]


class _SliceLog:
    """A depth store that records the slices read from it."""

    def __init__(self, frames: np.ndarray):
        self.frames, self.reads = frames, []

    def __getitem__(self, key: slice) -> np.ndarray:
        self.reads.append((key.start, key.stop))
        return self.frames[key]


def test_read_depth_reads_runs_of_consecutive_positions_in_order():
    store = _SliceLog(np.arange(10 * 2 * 3, dtype=np.uint16).reshape(10, 2, 3))
    got = read_depth(store, np.array([0, 1, 2, 5, 7, 8, 3, 3]))
    assert store.reads == [(0, 3), (5, 6), (7, 9), (3, 4), (3, 4)]
    assert got[:, 0, 0].tolist() == [0, 6, 12, 30, 42, 48, 18, 18]  # frame k starts at 6k
    assert got.shape == (8, 2, 3) and got[3].tolist() == [[30, 31, 32], [33, 34, 35]]


def test_bev_face_filter_drops_only_downward_faces_up_high():
    """Floor at 0 and ceiling at 2.5 fix the cut at 1.7 m and mid-height at 1.25 m (ceiling_cut). Below the cut:
    a face looking down at 1.5 m (centroid above mid: dropped), the same face looking up (kept), a face looking
    down at 0.5 m (a table's underside: kept) and a wall (normal horizontal: kept)."""
    floor = [[0, 0, 0], [4, 0, 0], [0, 4, 0]]
    ceiling = [[0, 0, 2.5], [0, 4, 2.5], [4, 0, 2.5]]
    down_high = [[1, 1, 1.5], [1, 2, 1.5], [2, 1, 1.5]]  # (b - a) x (c - a) = (0, 1, 0) x (1, 0, 0): -z
    up_high = [[1, 1, 1.5], [2, 1, 1.5], [1, 2, 1.5]]
    down_low = [[1, 1, 0.5], [1, 2, 0.5], [2, 1, 0.5]]
    wall = [[3, 3, 0.2], [3, 3, 1.6], [3, 2, 1.6]]
    verts = np.array(floor + ceiling + down_high + up_high + down_low + wall, float)
    faces = np.arange(len(verts), dtype=np.int32).reshape(-1, 3)
    cut, mid = ceiling_cut(verts)
    assert (cut, mid) == pytest.approx((1.7, 1.25))
    assert kept_faces(verts, faces, cut, mid).tolist() == faces[[0, 3, 4, 5]].tolist()


def test_points_outside_the_mesh_box_hit_no_voxel():
    """Voxels (0, 0, 0) and (2, 0, 0): the padded grid spans voxel -1..3 in x and -1..1 in y and z. Points far
    below or above along any axis clamp onto the padding, never onto the voxels of the box's first or last layer."""
    mesh = geometry.MeshVoxels(np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]))
    assert mesh.shape == (5, 3, 3) and mesh.count == 2
    outside = np.array([[-0.5, 0, 0], [0.9, 0, 0], [0, -0.5, 0], [0, 0.5, 0], [0, 0, -0.5], [0.2, 0, 0.5],
                        [-30.0, -30.0, -30.0], [30.0, 30.0, 30.0]], np.float32)
    assert mesh.ids(outside).tolist() == []
    assert mesh.ids(np.array([[0.04, 0.0, 0.0], [0.16, 0.04, -0.04]], np.float32)).tolist() == [0, 1]
