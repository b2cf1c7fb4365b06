"""`ross3d prep scannet --source posed-rgbd` (the generic layout of docs/posed-rgbd.md): hand-made scans exported as
posed_images, then rewritten in the generic layout with another depth scale (TUM-style 5000 per metre), 3x3
intrinsics and unpadded frame numbers, prepare exactly as the posed_images export does; without the scans folder
`--fuse-mesh` gives them a mesh, max-coverage and a BEV; bad files fail their scene naming the file; the docs'
ARKitScenes conversion example, run on an ARKitScenes-style folder, gives the same frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from typer.testing import CliRunner

from prep_scannet_scene import describe, write_scene
from ross3d.errors import ConfigError
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet
from ross3d.prep.sources import SourceOptions
from ross3d.scannet.posed_rgbd import depth_in_millimetres
from ross3d.synth.posed_export import export_posed_images
from ross3d_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
SCENES = ["scene0000_00", "scene0001_00"]
SCALE = 5000.0


def _options(fuse_mesh=False, **sources) -> PrepOptions:
    return PrepOptions(frame_stride=2, num_frames=8, bev_size=64, fuse_mesh=fuse_mesh,
                       sources=SourceOptions(**sources))


def to_generic(posed_scene, out):
    """The posed_images scene folder in the generic layout: numbers without padding, depth x5 (1/5000 m), 3x3
    intrinsics, poses copied."""
    for sub in ("color", "depth", "pose"):
        (out / sub).mkdir(parents=True)
    for name, target in (("depth_intrinsic.txt", "intrinsic_depth.txt"), ("intrinsic.txt", "intrinsic_color.txt")):
        k = np.loadtxt(posed_scene / name)[:3, :3]
        np.savetxt(out / target, k)
    for jpg in sorted(posed_scene.glob("*.jpg")):
        n = str(int(jpg.stem))
        shutil.copyfile(jpg, out / "color" / f"{n}.jpg")
        shutil.copyfile(posed_scene / f"{jpg.stem}.txt", out / "pose" / f"{n}.txt")
        mm = cv2.imread(str(posed_scene / f"{jpg.stem}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / "depth" / f"{n}.png"), (mm.astype(np.uint32) * 5).astype(np.uint16))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgbd")
    scans = root / "scans"
    for i, s in enumerate(SCENES):
        write_scene(scans, s, seed=i, keep=False)
    export = root / "export"
    export_posed_images(scans, export, [describe(s) for s in SCENES], stride=2, bev_size=64)
    for s in SCENES:
        to_generic(export / "posed_images" / s, root / "rgbd" / s)
    return root, scans, export


@pytest.fixture(scope="module")
def posed_prep(data):
    """The posed_images export prepared, the reference of the generic layout."""
    root, scans, export = data
    report = prep_scannet(scans, root / "posed", _options(source="posed-images",
                                                          posed_images=str(export / "posed_images")))
    assert report.ok == SCENES, report.failed
    return root / "posed"


def _files(prep, scene_id):
    z = zarr.open_group(prep / "scenes" / scene_id / "arrays.zarr", mode="r")
    arrays = {k: v[:] for k, v in z.members(max_depth=None) if isinstance(v, zarr.Array)}
    return pq.read_table(prep / "scenes" / scene_id / "frames.parquet").to_pydict(), arrays


def test_generic_layout_prepares_as_the_posed_images_export(data, posed_prep):
    root, scans, _ = data
    generic = prep_scannet(scans, root / "generic", _options(source="posed-rgbd", rgbd=str(root / "rgbd"),
                                                             depth_scale=SCALE))
    assert generic.ok == SCENES, generic.failed
    for s in SCENES:
        (frames_a, arrays_a), (frames_b, arrays_b) = _files(root / "posed", s), _files(root / "generic", s)
        assert frames_a == frames_b
        assert sorted(arrays_a) == sorted(arrays_b)
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    tables = [pq.read_table(root / p / "selections.parquet").to_pylist() for p in ("posed", "generic")]
    assert tables[0] == tables[1]
    manifest = json.loads((root / "generic" / "manifest.json").read_text())
    assert manifest["inputs"]["source"] == "posed-rgbd" and manifest["inputs"]["depth_scale"] == SCALE
    assert manifest["scenes"][SCENES[0]]["mesh_source"] == "scan"


def test_generic_layout_without_scans_fuses_a_mesh(data):
    root, _, _ = data
    (root / "no_scans").mkdir(exist_ok=True)
    report = prep_scannet(root / "no_scans", root / "fused", _options(
        fuse_mesh=True, source="posed-rgbd", rgbd=str(root / "rgbd"), depth_scale=SCALE))
    assert report.ok == SCENES, report.failed
    manifest = json.loads((root / "fused" / "manifest.json").read_text())
    for s in SCENES:
        assert manifest["scenes"][s]["mesh_source"] == "fused" and manifest["scenes"][s]["bev_source"] == "fused"
        z = zarr.open_group(root / "fused" / "scenes" / s / "arrays.zarr", mode="r")
        assert "max-coverage" in z["coords"] and z["bev/valid"][:].mean() > 0.2
    gains = [r["new_voxels"] for r in pq.read_table(root / "fused" / "selections.parquet").to_pylist()
             if r["strategy"] == "max-coverage"]
    assert sum(gains) > 0
    assert pq.read_table(root / "fused" / "objects.parquet").num_rows == 0


def test_depth_scale_conversion():
    raw = np.array([[5000, 7, 65535]], np.uint16)
    assert depth_in_millimetres(raw, 5000.0).tolist() == [[1000, 1, 13107]]
    assert depth_in_millimetres(raw, 500.0).tolist() == [[10000, 14, 0]]  # 131 m is beyond uint16 millimetres
    assert depth_in_millimetres(raw, 1000.0) is raw


def test_bad_input_fails_the_scene_naming_the_file(data, tmp_path):
    root, _, _ = data
    good = root / "rgbd" / SCENES[0]
    cases = {
        "scene0100_00": (lambda d: (d / "pose" / "4.txt").unlink(), "pose/4.txt: file not found"),
        "scene0101_00": (lambda d: (d / "intrinsic_depth.txt").write_text("1 2 3 4 5 6 7 8\n"),
                         "intrinsic_depth.txt: expected 9 (3x3) or 16 (4x4) numbers, found 8"),
        "scene0102_00": (lambda d: (d / "intrinsic_color.txt").unlink(), "intrinsic_color.txt: missing, and the "
                         "colour images (80x60) are not the depth size (64x48)"),
        "scene0103_00": (lambda d: cv2.imwrite(str(d / "depth" / "6.png"), np.zeros((48, 64), np.uint8)),
                         "depth/6.png: not a 16-bit single-channel depth PNG"),
        "scene0104_00": (lambda d: (d / "color" / "8.jpg").write_bytes(b"\xff\xd8 not a picture"),
                         "scene0104_00: frame 8: colour JPEG cannot be decoded"),
        "scene0105_00": (lambda d: [p.write_text("nan " * 16) for p in (d / "pose").glob("*.txt")],
                         "scene0105_00: TSDF fusion of 0 frames gave no surface"),
    }
    shutil.copytree(good, tmp_path / "rgbd" / SCENES[0])
    for scene_id, (damage, _) in cases.items():
        shutil.copytree(good, tmp_path / "rgbd" / scene_id)
        damage(tmp_path / "rgbd" / scene_id)
    (tmp_path / "scans").mkdir()
    report = prep_scannet(tmp_path / "scans", tmp_path / "prep", _options(
        fuse_mesh=True, source="posed-rgbd", rgbd=str(tmp_path / "rgbd"), depth_scale=SCALE))
    assert report.ok == [SCENES[0]]
    for scene_id, (_, message) in cases.items():
        assert message in report.failed[scene_id], report.failed[scene_id]


def test_source_option_errors():
    with pytest.raises(ConfigError, match="--source posed-rgbd needs --rgbd DIR"):
        SourceOptions(source="posed-rgbd")
    with pytest.raises(ConfigError, match="--depth-scale need --source posed-rgbd"):
        SourceOptions(depth_scale=5000.0)
    with pytest.raises(ConfigError, match="--depth-scale must be > 0"):
        SourceOptions(source="posed-rgbd", rgbd="x", depth_scale=0)
    a = _options(source="posed-rgbd", rgbd="x").fingerprint()
    assert a != _options(source="posed-rgbd", rgbd="x", depth_scale=SCALE).fingerprint()


def _docs_conversion():
    """The `convert` function of the ARKitScenes example in docs/posed-rgbd.md, executed from the docs' text."""
    text = (ROOT / "docs" / "posed-rgbd.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {"__name__": "docs_example"}
    exec(compile(code, "docs/posed-rgbd.md", "exec"), namespace)  # noqa: S102 - the repository's own docs
    return namespace["convert"]


def _arkitscenes_style(posed_scene, video_dir):
    """The posed_images scene as an ARKitScenes raw video folder: 10 fps stamps, colour PNGs resized to the depth
    size, depth PNGs (mm), per-frame .pincam of the depth camera, and a .traj of world-to-camera axis-angle +
    translation lines for the frames with a pose (the others have no line, as in ARKit)."""
    video = video_dir.name
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (video_dir / sub).mkdir(parents=True)
    k = np.loadtxt(posed_scene / "depth_intrinsic.txt")
    traj = []
    for jpg in sorted(posed_scene.glob("*.jpg")):
        stem = f"{video}_{100 + int(jpg.stem) / 10:.3f}"
        depth = cv2.imread(str(posed_scene / f"{jpg.stem}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(video_dir / "lowres_depth" / f"{stem}.png"), depth)
        rgb = cv2.resize(cv2.imread(str(jpg)), (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(video_dir / "lowres_wide" / f"{stem}.png"), rgb)
        (video_dir / "lowres_wide_intrinsics" / f"{stem}.pincam").write_text(
            f"{depth.shape[1]} {depth.shape[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}\n")
        pose = np.loadtxt(posed_scene / f"{jpg.stem}.txt")
        if np.isfinite(pose).all():
            w2c = np.linalg.inv(pose)
            rvec = cv2.Rodrigues(w2c[:3, :3])[0].ravel()
            traj.append(" ".join(f"{v:.9f}" for v in [100 + int(jpg.stem) / 10, *rvec, *w2c[:3, 3]]))
    (video_dir / "lowres_wide.traj").write_text("\n".join(traj) + "\n")


def test_docs_arkitscenes_conversion(data, posed_prep, tmp_path):
    """The docs' example turns an ARKitScenes-style folder into scenes that prepare like the posed_images export:
    same depth, validity, poses and uniform token coordinates (frames renumbered 0, 1, ...: stride 1 here against
    the export's stride 2)."""
    _, scans, export = data
    convert = _docs_conversion()
    _arkitscenes_style(export / "posed_images" / SCENES[0], tmp_path / "raw" / "41069021")
    convert(tmp_path / "raw" / "41069021", tmp_path / "rgbd" / SCENES[0])
    report = prep_scannet(scans, tmp_path / "prep", PrepOptions(frame_stride=1, num_frames=8, bev_size=64,
                                                                sources=SourceOptions(source="posed-rgbd",
                                                                                      rgbd=str(tmp_path / "rgbd"))))
    assert report.ok == [SCENES[0]], report.failed
    (frames_a, arrays_a), (frames_b, arrays_b) = _files(posed_prep, SCENES[0]), _files(tmp_path / "prep", SCENES[0])
    assert frames_b["frame_idx"] == [i // 2 for i in frames_a["frame_idx"]]
    assert frames_b["valid"] == frames_a["valid"] and not all(frames_a["valid"])
    valid = np.array(frames_a["valid"])
    np.testing.assert_allclose(np.array(frames_b["pose"])[valid], np.array(frames_a["pose"])[valid], atol=1e-5)
    np.testing.assert_array_equal(arrays_b["depth"], arrays_a["depth"])
    np.testing.assert_allclose(arrays_b["coords/uniform"], arrays_a["coords/uniform"], atol=1e-4)


def test_through_the_cli(data, tmp_path):
    root, _, _ = data
    (tmp_path / "scans").mkdir()
    args = ["prep", "scannet", str(tmp_path / "scans"), str(tmp_path / "prep"), "--scenes", SCENES[1],
            "--source", "posed-rgbd", "--rgbd", str(root / "rgbd"), "--depth-scale", "5000", "--fuse-mesh",
            "--fuse-voxel-size", "0.05", "--fuse-trunc", "0.15", "--frame-stride", "2", "--num-frames", "8",
            "--bev-size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert manifest["options"]["fuse_voxel_size"] == 0.05 and manifest["options"]["fuse_trunc"] == 0.15
    assert manifest["inputs"]["depth_scale"] == 5000 and manifest["scenes"][SCENES[1]]["mesh_source"] == "fused"
    bad = CliRunner().invoke(app, args[:-8] + ["--fuse-trunc", "0.01"])
    assert bad.exit_code != 0 and "--fuse-trunc at least the voxel size" in bad.output
    assert len(bad.output.strip().splitlines()) == 1, bad.output
