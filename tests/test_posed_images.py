"""Readers of the posed_images export, EmbodiedScan infos, released BEV images, selection and box files."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from ross3d.errors import InputError
from ross3d.scannet.posed_images import (
    PosedImagesScene,
    load_box_file,
    load_embodiedscan_infos,
    load_released_bev,
    load_selection_file,
)


def _write_matrix(path, m):
    path.write_text("\n".join(" ".join(f"{v:f}" for v in row) for row in m) + "\n")


@pytest.fixture
def export(tmp_path):
    scene = tmp_path / "scene0001_00"
    scene.mkdir()
    rng = np.random.default_rng(0)
    _write_matrix(scene / "intrinsic.txt", np.diag([1170.0, 1170.0, 1, 1]))
    _write_matrix(scene / "depth_intrinsic.txt", np.diag([577.0, 577.0, 1, 1]))
    written = {}
    for idx in (0, 10, 20, 30):
        color = cv2.imencode(".jpg", rng.integers(0, 255, (24, 32, 3), np.uint8))[1].tobytes()
        (scene / f"{idx:05d}.jpg").write_bytes(color)
        depth = rng.integers(0, 6000, (12, 16)).astype(np.uint16)
        cv2.imwrite(str(scene / f"{idx:05d}.png"), depth)
        pose = np.eye(4)
        pose[:3, 3] = rng.normal(size=3)
        if idx == 20:
            (scene / f"{idx:05d}.txt").write_text("-inf -inf -inf -inf\n" * 4)
        else:
            _write_matrix(scene / f"{idx:05d}.txt", pose)
        written[idx] = (color, depth, pose)
    return scene, written


def test_posed_images_frames(export):
    scene, written = export
    reader = PosedImagesScene(scene)
    assert reader.frame_indices == [0, 10, 20, 30]
    assert reader.intrinsic_depth[0, 0] == 577.0
    frames = list(reader.frames(stride=10))
    assert [f.index for f in frames] == [0, 10, 20, 30]
    assert [f.valid for f in frames] == [True, True, False, True]
    for f in frames:
        color, depth, pose = written[f.index]
        assert f.color_jpeg == color
        np.testing.assert_array_equal(f.depth, depth)
        if f.valid:
            np.testing.assert_allclose(f.pose, pose, atol=1e-6)
    assert [f.index for f in reader.frames(stride=20)] == [0, 20]


@pytest.mark.parametrize("damage, message", [
    (lambda s: (s / "00010.png").unlink(), "00010.png: depth file missing"),
    (lambda s: (s / "00010.txt").write_text("1 2 3\n"), "00010.txt: expected 16 numbers"),
    (lambda s: (s / "00010.txt").write_text("a b c d\n" * 4), "00010.txt: not a 4x4 matrix"),
    (lambda s: (s / "00030.txt").unlink(), "00030.txt: file not found"),
])
def test_bad_frames_name_the_file(export, damage, message):
    scene, _ = export
    damage(scene)
    with pytest.raises(InputError, match=message):
        list(PosedImagesScene(scene).frames())


def test_missing_intrinsics(export):
    scene, _ = export
    (scene / "depth_intrinsic.txt").unlink()
    with pytest.raises(InputError, match="depth_intrinsic.txt: file not found"):
        PosedImagesScene(scene)


def test_embodiedscan_infos(tmp_path):
    align = np.eye(4)
    align[:3, 3] = [1, 2, 3]
    infos = {"metainfo": {}, "data_list": [
        {"sample_idx": "scannet/scene0001_00", "axis_align_matrix": align, "depth_cam2img": np.diag([5.0, 5, 1]),
         "cam2img": np.eye(4), "images": [{"img_path": f"scannet/posed_images/scene0001_00/{i:05d}.jpg"}
                                          for i in (0, 20, 40)]},
        {"sample_idx": "3rscan/xyz", "images": []},
    ]}
    pkl = tmp_path / "embodiedscan_infos_train.pkl"
    pkl.write_bytes(pickle.dumps(infos))
    scenes = load_embodiedscan_infos([pkl])
    assert list(scenes) == ["scene0001_00"]
    s = scenes["scene0001_00"]
    assert s.frame_indices == [0, 20, 40]
    np.testing.assert_array_equal(s.axis_align_matrix, align)
    assert s.depth_cam2img.shape == (4, 4) and s.depth_cam2img[0, 0] == 5.0
    pkl.write_bytes(b"garbage")
    with pytest.raises(InputError, match="embodiedscan_infos_train.pkl: not a readable pickle"):
        load_embodiedscan_infos([pkl])


def test_released_bev_resize_and_crop(tmp_path):
    # A 640x480 (4:3) canvas with a 480x480 square of four coloured quadrants centred on black borders.
    canvas = np.zeros((480, 640, 3), np.uint8)
    quad = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 0)}
    for (r, c), rgb in quad.items():
        canvas[r * 240:(r + 1) * 240, 80 + c * 240:80 + (c + 1) * 240] = rgb
    path = tmp_path / "view_0.png"
    Image.fromarray(canvas).save(path)
    rgb, valid = load_released_bev(path, depth_size=(640, 480), size=432)
    assert rgb.shape == (432, 432, 3) and valid.shape == (432, 432)
    # 640x480 -> 576x432 scales by 0.9: the square spans x 72..504, exactly the centre crop.
    for (r, c), colour in quad.items():
        np.testing.assert_array_equal(rgb[50 + r * 300, 50 + c * 300], colour)
    assert valid[2:-2, 2:-2].all()
    # The same file through PIL by hand: the original's resize then crop from left 72.
    expected = np.asarray(Image.open(path).convert("RGB").resize((576, 432), Image.BICUBIC).crop((72, 0, 504, 432)))
    np.testing.assert_array_equal(rgb, expected)


def test_selection_and_box_files(tmp_path):
    sel = tmp_path / "scannet_select_frames.json"
    sel.write_text(json.dumps([{"video_id": "scene0001_00", "frame_files": [
        "data/scannet/posed_images/scene0001_00/00040.jpg", "data/scannet/posed_images/scene0001_00/00000.jpg",
        "data/scannet/posed_images/scene0001_00/00020.jpg"], "voxel_nums": [50, 30, 5],
        "num_all_voxels": 90, "num_select_voxels": 85}]))
    selection = load_selection_file(sel)["scene0001_00"]
    assert selection.consumer_frames(2) == ([0, 40], [30, 50])
    assert selection.consumer_frames(5) == ([0, 20, 40], [30, 5, 50])
    boxes = tmp_path / "scannet_val_pred_box.json"
    boxes.write_text(json.dumps({"scannet/scene0001_00": [[0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6]],
                                 "scannet/scene0002_00": []}))
    loaded = load_box_file(boxes)
    assert loaded["scene0001_00"].shape == (2, 6) and loaded["scene0002_00"].shape == (0, 6)
    boxes.write_text(json.dumps({"scannet/scene0001_00": [[0, 0, 0, 1, 1]]}))
    with pytest.raises(InputError, match="lists of 6 numbers"):
        load_box_file(boxes)
