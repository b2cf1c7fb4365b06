"""Proposals import for `prep qa`: predicted-box JSON and Mask3D-style sparse masks over mesh vertices (first 50
rows, AABB of the aligned vertices), proposals.parquet round trip, and AABB IoU against a direct computation."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
import scipy.sparse
from qa_helpers import write_json, write_label_map, write_objects
from typer.testing import CliRunner

from ross3d.errors import ConfigError, InputError
from ross3d.boxes import aabb_iou
from ross3d.prep.qa.proposals import read_proposals
from ross3d.scannet.posed_images import load_box_file
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.qa.schema import read_samples
from ross3d_cli.app import app

SHIFT = np.array([1.0, -2.0, 0.5])


def _write_scan(scans, scene_id, vertices):
    folder = scans / scene_id
    folder.mkdir(parents=True)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                     o3d.utility.Vector3iVector(np.array([[0, 1, 2]] * 1, np.int32)))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.full((len(vertices), 3), 0.5))
    o3d.io.write_triangle_mesh(str(folder / f"{scene_id}_vh_clean_2.ply"), mesh)
    matrix = np.eye(4)
    matrix[:3, 3] = SHIFT
    (folder / f"{scene_id}.txt").write_text(
        "sceneType = Bedroom / Hotel\r\naxisAlignment = " + " ".join(f"{v:g}" for v in matrix.ravel()) + "\r\n")


def _masks(rows, n_vertices):
    dense = np.zeros((len(rows), n_vertices), np.float32)
    for r, ids in enumerate(rows):
        dense[r, ids] = 1.0
    return scipy.sparse.csr_matrix(dense)


@pytest.fixture
def masked(tmp_path):
    rng = np.random.default_rng(0)
    vertices = rng.uniform(-3, 3, size=(40, 3))
    _write_scan(tmp_path / "scans", "scene0000_00", vertices)
    _write_scan(tmp_path / "scans", "scene0001_00", vertices)
    mask_dir = tmp_path / "mask"
    mask_dir.mkdir()
    # scene0000: rows 0, 1 fine, row 2 empty -> the list ends there (the original's behaviour)
    masks = _masks([[0, 1, 2, 3], [10, 11], [], [5]], 40).tolil()
    masks[0, 20] = 0.5  # only values equal to 1 select a vertex
    scipy.sparse.save_npz(mask_dir / "scene0000_00.mask.npz", masks.tocsr())
    # scene0001: 60 rows -> only the first 50 are read
    scipy.sparse.save_npz(mask_dir / "scene0001_00.mask.npz", _masks([[k % 40] for k in range(60)], 40))
    prep = tmp_path / "prep"
    write_objects(prep)
    return prep, mask_dir, tmp_path / "scans", vertices + SHIFT


def _aabb(points):
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.concatenate([(lo + hi) / 2, hi - lo])


def test_mask_proposals_are_aabbs_of_aligned_vertices(masked, tmp_path):
    prep, mask_dir, scans, aligned = masked
    write_json(tmp_path / "mq" / "ScanQA_v1.0_val.json", [])
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "mq"), proposals=mask_dir, scans_dir=scans)
    boxes = read_proposals(report.proposals_path)
    assert boxes["scene0000_00"].shape == (2, 6)
    np.testing.assert_allclose(boxes["scene0000_00"][0], _aabb(aligned[[0, 1, 2, 3]]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(boxes["scene0000_00"][1], _aabb(aligned[[10, 11]]), rtol=0, atol=1e-5)
    assert boxes["scene0001_00"].shape == (50, 6)
    np.testing.assert_allclose(boxes["scene0001_00"][49, :3], aligned[49 % 40], atol=1e-5)
    np.testing.assert_array_equal(boxes["scene0001_00"][:, 3:], 0)


def test_mask_proposals_scans_dir_from_manifest_or_error(masked, tmp_path):
    prep, mask_dir, scans, _ = masked
    write_json(tmp_path / "mq" / "ScanQA_v1.0_val.json", [])
    with pytest.raises(ConfigError, match="--scans"):
        prep_qa(prep, QaSources(scanqa=tmp_path / "mq"), proposals=mask_dir)
    write_json(prep / "manifest.json", {"options": {"scans_dir": str(scans)}})
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "mq"), proposals=mask_dir)
    assert len(read_proposals(report.proposals_path)["scene0000_00"]) == 2


def test_mask_columns_must_match_mesh_vertices(masked, tmp_path):
    prep, mask_dir, scans, _ = masked
    scipy.sparse.save_npz(mask_dir / "scene0000_00.mask.npz", _masks([[0]], 39))
    write_json(tmp_path / "mq" / "ScanQA_v1.0_val.json", [])
    with pytest.raises(InputError, match="39 columns but the mesh has 40 vertices"):
        prep_qa(prep, QaSources(scanqa=tmp_path / "mq"), proposals=mask_dir, scans_dir=scans)


def test_proposals_json_with_or_without_prefix_and_bad_boxes(tmp_path):
    write_json(tmp_path / "p.json", {"scannet/scene0000_00": [[1, 2, 3, 4, 5, 6]], "scene0001_00": []})
    boxes = load_box_file(tmp_path / "p.json")
    np.testing.assert_array_equal(boxes["scene0000_00"], [[1, 2, 3, 4, 5, 6]])
    assert boxes["scene0001_00"].shape == (0, 6)
    write_json(tmp_path / "bad.json", {"scannet/scene0000_00": [[1, 2, 3]]})
    with pytest.raises(InputError, match="boxes must be lists of 6 numbers"):
        load_box_file(tmp_path / "bad.json")


def test_aabb_iou_matches_a_direct_volume_computation():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.uniform(-1, 1, 3), rng.uniform(0.5, 2, 3)])
    others = np.concatenate([rng.uniform(-1, 1, (20, 3)), rng.uniform(0.5, 2, (20, 3))], axis=1)
    expected = []
    for b in others:
        overlap = [max(0.0, min(a[i] + a[i + 3] / 2, b[i] + b[i + 3] / 2) - max(a[i] - a[i + 3] / 2,
                                                                             b[i] - b[i + 3] / 2)) for i in range(3)]
        inter = overlap[0] * overlap[1] * overlap[2]
        expected.append(inter / (np.prod(a[3:]) + np.prod(b[3:]) - inter + 1e-8))  # the original's box3d_iou
    np.testing.assert_allclose(aabb_iou(a, others), expected, rtol=1e-12)
    assert np.isclose(aabb_iou(a, a[None])[0], 1.0)


def test_cli_proposals_json_gives_scan2cap_val_boxes(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    write_label_map(tmp_path / "labels.tsv")
    write_json(tmp_path / "sr" / "ScanRefer_filtered_val.json", [
        {"scene_id": "scene0000_00", "object_id": "0", "object_name": "chair", "description": "a chair."}])
    write_json(tmp_path / "pred.json", {"scannet/scene0000_00": [[0.2, 0, 0, 2, 2, 2], [0, 0, 0, 2, 2, 1.9]]})
    result = CliRunner().invoke(app, ["prep", "qa", str(prep), "--scanrefer", str(tmp_path / "sr"), "--label-map",
                                      str(tmp_path / "labels.tsv"), "--proposals", str(tmp_path / "pred.json")])
    assert result.exit_code == 0, result.output
    (cap,) = read_samples(prep / "samples.parquet", tasks=["scan2cap"])
    # IoU 0.9 (shift 0.2 of 2) vs 0.95 (height 1.9 of 2): the second proposal wins
    np.testing.assert_allclose(cap.box_input, [0, 0, 0, 2, 2, 1.9], rtol=1e-6)
    assert len(read_proposals(prep / "proposals.parquet")["scene0000_00"]) == 2
