"""The test-data generator's own derivations of the original's files (ross3d.synth.top_down,
ross3d.synth.original_selection, the box rule and scene description of ross3d.synth.posed_export /
ross3d.synth.description) on hand-computed cases, so that their agreement with prep in tests/test_posed_export.py
and tests/test_prep_sources.py is not two implementations sharing a mistake."""

import numpy as np

from ross3d.synth.description import SceneDescription, describe_synth
from ross3d.synth.original_selection import depth_points, greedy_max_coverage, selection_record, voxel_keys
from ross3d.synth.posed_export import gt_boxes
from ross3d.synth.scenes import make_scenes
from ross3d.synth.top_down import rasterise_top_down

BOUNDS = (0.0, 0.0, 4.0, 4.0)  # 4 x 4 pixels of 1 m: centres at 0.5, 1.5, 2.5, 3.5; row 0 at y = 3.5


def _square(lo, hi, z):
    return [[lo, lo, z], [hi, lo, z], [hi, hi, z], [lo, hi, z]], [[0, 1, 2], [0, 2, 3]]


def test_top_down_keeps_the_highest_surface_below_the_cut():
    """A red triangle x + y <= 4 at z = 1 (10 centres, the diagonal ones on its edge included), a green square
    [1, 3]^2 at z = 2 (4 centres, 3 of them over the triangle), a blue square over everything at z = 3 above the cut 2.5, and a vertical
    triangle (no projected area)."""
    verts, faces, colors = [[0, 0, 1], [4, 0, 1], [0, 4, 1]], [[0, 1, 2]], [[255, 0, 0]] * 3
    for (lo, hi, z), rgb in (((1, 3, 2), [0, 255, 0]), ((0, 4, 3), [0, 0, 255])):
        v, f = _square(lo, hi, z)
        faces += [[len(verts) + i for i in tri] for tri in f]
        verts += v
        colors += [rgb] * 4
    faces.append([len(verts), len(verts) + 1, len(verts) + 2])
    verts += [[0, 0, 0], [4, 0, 0], [0, 0, 4]]
    colors += [[9, 9, 9]] * 3
    rgb, valid = rasterise_top_down(np.array(verts, float), np.array(colors, np.uint8), np.array(faces), BOUNDS, 4,
                                    2.5)
    # rows from y = 3.5: the triangle's 10 centres and the square's centre (2.5, 2.5) outside it
    expected_valid = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(valid, expected_valid)
    green = np.zeros((4, 4), bool)
    green[1:3, 1:3] = True
    np.testing.assert_array_equal(rgb[green], [[0, 255, 0]] * 4)
    np.testing.assert_array_equal(rgb[valid & ~green], [[255, 0, 0]] * 7)
    np.testing.assert_array_equal(rgb[~valid], [[0, 0, 0]] * 5)


def test_top_down_colour_is_the_barycentric_mix():
    """Vertex colours (0,0,0), (200,0,0), (0,100,0) at (0,0), (4,0), (0,4): the centre (2.5, 0.5) has weights
    0.625 and 0.125 on the last two: (125, 12.5 -> 12 (round half to even), 0)."""
    rgb, _ = rasterise_top_down(np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], float),
                                np.array([[0, 0, 0], [200, 0, 0], [0, 100, 0]], np.uint8), np.array([[0, 1, 2]]),
                                BOUNDS, 4, 1.0)
    assert rgb[3, 2].tolist() == [125, 12, 0]


def test_depth_points_and_voxels():
    """fx = fy = 2, cx = 0.5, cy = 0, depth 1 m and 2 m at u = 0, 1 of row 0, camera shifted by (1, 2, 3):
    x = (u - 0.5) z / 2 gives (-0.25, 0, 1) and (0.5, 0, 2), then (0.75, 2, 4) and (1.5, 2, 5)."""
    k = np.array([[2, 0, 0.5, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    pose = np.eye(4)
    pose[:3, 3] = [1, 2, 3]
    points = depth_points(np.array([[1000, 2000]], np.uint16), k, pose, 1000.0)
    np.testing.assert_allclose(points, [[0.75, 2, 4], [1.5, 2, 5]])
    # round(xyz / 0.1): (7.1, 20.1, 39.9) and (7.4, 19.8, 40.4) share voxel (7, 20, 40); (-2.6, 0, 0) is (-3, 0, 0)
    assert len(voxel_keys(np.array([[0.71, 2.01, 3.99], [0.74, 1.98, 4.04]]))) == 1
    assert len(voxel_keys(np.array([[0.71, 2.01, 3.99], [-0.26, 0, 0], [-0.34, 0.04, -0.04]]))) == 2


def test_greedy_max_coverage():
    """{1,2,3,4} (4 new), then {4,5,6} (2 new: 5, 6), then {7} (1) before {1,2} (0): a zero gain does not stop it."""
    sets = [np.array(s, np.int64) for s in ([1, 2, 3, 4], [4, 5, 6], [1, 2], [7])]
    assert greedy_max_coverage(sets, 32, seed=0) == ([0, 1, 3, 2], [4, 2, 1, 0])
    assert greedy_max_coverage(sets, 2, seed=0) == ([0, 1], [4, 2])
    picks, gains = greedy_max_coverage([np.array([1]), np.array([2])], 32, seed=0)  # a tie: either order
    assert sorted(picks) == [0, 1] and gains == [1, 1]


def test_selection_record_candidates():
    """70 valid frames, each seeing its own voxel: 35 remain after [::2] (>= 32), so only the even frames are
    candidates and 32 of them are picked, one new voxel each; with 20 frames all of them are candidates."""
    record = selection_record("scene0000_00", {f: np.array([f], np.int64) for f in range(70)}, seed=0)
    frames = [int(p.rsplit("/", 1)[1][:5]) for p in record["frame_files"]]
    assert len(frames) == 32 and all(f % 2 == 0 for f in frames) and record["voxel_nums"] == [1] * 32
    assert record["num_all_voxels"] == 35 and record["num_select_voxels"] == 32
    assert record["video_id"] == "scannet/scene0000_00" and record["frame_files"][0].startswith(
        "data/scannet/posed_images/scene0000_00/") and record["frame_files"][0].endswith(".jpg")
    small = selection_record("scene0000_00", {f: np.array([f], np.int64) for f in range(20)}, seed=0)
    assert len(small["frame_files"]) == 20 and small["num_all_voxels"] == 20


def _description(ids, boxes):
    return SceneDescription("scene0000_00", np.eye(4), np.zeros((0, 3)), np.zeros((0, 3), np.uint8),
                            np.zeros((0, 3), int), np.zeros(0, bool), 2.5, ids, boxes)


def test_gt_box_rule():
    """B.6: list index = objectId; a scene with ids not 0..K-1, or an object without geometry, is dropped."""
    a, b = np.array([0.1234567, 0, 0, 1, 1, 1]), np.array([1, 2, 3, 0.5, 0.5, 0.5])
    assert gt_boxes(_description([0, 1], [a, b])) == [[0.123457, 0, 0, 1, 1, 1], [1, 2, 3, 0.5, 0.5, 0.5]]
    assert gt_boxes(_description([0, 2], [a, b])) is None
    assert gt_boxes(_description([0, 1], [a, None])) is None


def test_synth_description():
    """The ceiling faces of a synthetic room are its flat ceiling at the room height and the fragments 0.3-0.6 m
    below it; every object (structure included) has a box, ids 0..K-1."""
    scene = make_scenes(1, seed=0)[0]
    d = describe_synth(scene)
    h = scene.room.size[2]
    face_z = d.vertices[d.faces][:, :, 2]
    at_top = (face_z == h).all(axis=1)
    assert d.ceiling[at_top].all() and (d.ceiling & ~at_top).any()
    assert (face_z[d.ceiling] >= h - 0.6 - 1e-9).all()
    assert d.object_ids == list(range(len(d.object_ids))) and all(np.isfinite(b).all() for b in d.object_boxes)
