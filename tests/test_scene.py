"""Scene files on a hand-made scan: ply with RGBA colours, CRLF metadata, aggregation + segments -> known boxes."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ross3d.errors import InputError
from ross3d.scannet.scene import (
    object_boxes,
    read_axis_alignment,
    read_mesh,
    read_objects,
    scan_paths,
    transform_points,
)


def _write_ply(path, vertices, colors_rgba, faces):
    """Binary little-endian ply in ScanNet's layout (float xyz, uchar rgba, list uchar int faces)."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment made by a test\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vdt = np.dtype([("xyz", "<f4", 3), ("rgba", "u1", 4)])
    v = np.empty(len(vertices), vdt)
    v["xyz"], v["rgba"] = vertices, colors_rgba
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    f = np.empty(len(faces), fdt)
    f["n"], f["idx"] = 3, faces
    path.write_bytes(header.encode() + v.tobytes() + f.tobytes())


@pytest.fixture
def scan(tmp_path):
    """Two unit cubes' worth of vertices in a rotated frame; object 0 = first 8 vertices, object 1 = next 8."""
    sid = "scene0042_00"
    root = tmp_path / sid
    root.mkdir()
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    aligned = np.concatenate([cube * [1, 2, 0.5], cube * [0.5, 0.5, 1] + [3, 1, 0]])
    theta = np.deg2rad(30)
    align = np.eye(4)
    align[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    align[:3, 3] = [1.5, -2.0, 0.25]
    raw = transform_points(np.linalg.inv(align), aligned)
    colors = np.tile([[10, 200, 30, 255]], (16, 1))
    faces = np.array([[0, 1, 2], [8, 9, 10], [3, 5, 6]])
    paths = scan_paths(tmp_path, sid)
    _write_ply(paths.mesh, raw, colors, faces)
    align_text = " ".join(f"{x:.17g}" for x in align.reshape(-1))
    paths.meta.write_bytes(
        f"axisAlignment = {align_text}\r\ncolorHeight = 968\r\nsceneType = Bedroom / Hotel\r\n".encode()
    )
    segs = [5] * 4 + [6] * 4 + [9] * 8  # object 0 owns segments 5 and 6, object 1 segment 9
    paths.segs.write_text(json.dumps({"sceneId": sid, "segIndices": segs}))
    paths.aggregation.write_text(json.dumps({"sceneId": f"scannet.{sid}", "segGroups": [
        {"id": 1, "objectId": 1, "segments": [9], "label": "toaster oven"},
        {"id": 0, "objectId": 0, "segments": [6, 5], "label": "chair"},
        {"id": 2, "objectId": 2, "segments": [77], "label": "ghost"},
    ]}))
    return paths, align, aligned


def test_mesh_and_alignment(scan):
    paths, align, aligned = scan
    mesh = read_mesh(paths.mesh)
    assert mesh.vertices.shape == (16, 3) and mesh.faces.shape == (3, 3)
    np.testing.assert_array_equal(mesh.colors[0], [10, 200, 30])
    matrix, is_aligned = read_axis_alignment(paths.meta)
    assert is_aligned
    np.testing.assert_allclose(matrix, align, atol=1e-12)
    np.testing.assert_allclose(transform_points(matrix, mesh.vertices), aligned, atol=1e-5)


def test_objects_and_boxes(scan, caplog):
    paths, align, aligned = scan
    objects = read_objects(paths.aggregation, paths.segs, n_vertices=16)
    assert [(o.object_id, o.label) for o in objects] == [(0, "chair"), (1, "toaster oven"), (2, "ghost")]
    np.testing.assert_array_equal(objects[0].vertex_indices, np.arange(8))
    np.testing.assert_array_equal(objects[1].vertex_indices, np.arange(8, 16))
    assert len(objects[2].vertex_indices) == 0
    with caplog.at_level(logging.WARNING):
        boxes = object_boxes(objects, aligned)
    np.testing.assert_allclose(boxes[0], [0.5, 1.0, 0.25, 1.0, 2.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [3.25, 1.25, 0.5, 0.5, 0.5, 1.0], atol=1e-6)
    assert np.isnan(boxes[2]).all()
    assert "ghost" in caplog.text


def test_missing_axis_alignment_is_identity_with_warning(tmp_path, caplog):
    meta = tmp_path / "scene0000_00.txt"
    meta.write_text("colorHeight = 968\nnumColorFrames = 10\n")
    with caplog.at_level(logging.WARNING):
        matrix, is_aligned = read_axis_alignment(meta)
    assert not is_aligned
    np.testing.assert_array_equal(matrix, np.eye(4))
    assert "no axisAlignment" in caplog.text and str(meta) in caplog.text


@pytest.mark.parametrize("value", ["1 2 3", "1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16"])
def test_malformed_axis_alignment_names_the_file(tmp_path, value):
    meta = tmp_path / "scene0000_00.txt"
    meta.write_text(f"axisAlignment = {value}\n")
    with pytest.raises(InputError, match="scene0000_00.txt: axisAlignment"):
        read_axis_alignment(meta)


def test_bad_files_name_the_file(tmp_path, scan):
    paths, _, _ = scan
    paths.segs.write_text("{not json")
    with pytest.raises(InputError, match="segs.json: not valid JSON"):
        read_objects(paths.aggregation, paths.segs, n_vertices=16)
    with pytest.raises(InputError, match="mesh file not found"):
        read_mesh(tmp_path / "nope.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(InputError, match="garbage.ply"):
        read_mesh(garbage)


def test_truncated_mesh_names_the_file(tmp_path):
    """open3d returns the faces it read before the cut; the header's counts expose it. ScanNet's layout: 16 bytes
    per vertex (3 float32 + 4 uint8), 13 per triangle (a uint8 count + 3 int32)."""
    from ross3d.scannet.ply import write_scannet_ply

    rng = np.random.default_rng(0)
    path = tmp_path / "scene0000_00_vh_clean_2.ply"
    write_scannet_ply(path, rng.random((300, 3)), rng.integers(0, 255, (300, 3)), rng.integers(0, 300, (600, 3)))
    data = path.read_bytes()
    header = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) == header + 300 * 16 + 600 * 13
    cut = len(data) * 2 // 3
    path.write_bytes(data[:cut])
    whole_faces = (cut - header - 300 * 16) // 13
    with pytest.raises(InputError) as err:
        read_mesh(path)
    assert str(err.value) == (f"{path}: truncated or corrupt: the header declares 300 vertices and 600 faces, "
                              f"300 and {whole_faces} were read")


def test_segs_of_another_mesh_names_the_file(scan):
    paths, _, _ = scan
    paths.segs.write_text(json.dumps({"segIndices": [0] * 20}))  # the scan's mesh has 16 vertices
    with pytest.raises(InputError) as err:
        read_objects(paths.aggregation, paths.segs, n_vertices=16)
    assert str(err.value) == (f"{paths.segs}: segIndices has 20 entries but the mesh has 16 vertices (a segs file "
                              "of another scene?)")
