"""`prep scannet --fuse-mesh` on the synthetic scenes with their meshes removed, against the prep of the same scans
with the meshes: the fused BEV lies on the real geometry (world coordinates, tests/fused_compare.py), covers most of
what the cameras saw, with close colours; max-coverage on the fused mesh covers nearly as many real-mesh voxels as
max-coverage on the real mesh; the same holds for the posed_images export of the scans without the scans folder and
for their generic posed RGB-D export (`ross3d synth --export posed-rgbd`); the manifest says where mesh and BEV came
from."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import numpy as np
import zarr
from typer.testing import CliRunner

from fused_compare import compare, real_voxels_covered
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet
from ross3d.prep.sources import SourceOptions
from ross3d.synth.description import describe_synth
from ross3d.synth.posed_export import export_posed_images
from ross3d.synth.rgbd_export import export_posed_rgbd
from ross3d.synth.scenes import make_scenes
from ross3d_cli.app import app

SCENES = ["scene0000_00", "scene0001_00"]
OPTIONS = dict(frame_stride=3, num_frames=8, bev_size=432)  # 20 kept frames, 19 valid


@pytest.fixture(scope="module")
def preps(synth_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuse")
    meshless = root / "scans"
    shutil.copytree(synth_root / "scans", meshless, ignore=shutil.ignore_patterns("*_vh_clean_2.ply"))
    real = prep_scannet(synth_root / "scans", root / "real", PrepOptions(**OPTIONS))
    fused = prep_scannet(meshless, root / "fused", PrepOptions(**OPTIONS, fuse_mesh=True))
    assert real.ok == SCENES and fused.ok == SCENES, (real.failed, fused.failed)
    return synth_root, root, fused


def _bev(prep, scene_id):
    z = zarr.open_group(prep / "scenes" / scene_id / "arrays.zarr", mode="r")
    return z["bev/rgb"][:], z["bev/valid"][:], z["bev/bounds"][:]


@pytest.mark.parametrize("scene_id", SCENES)
def test_fused_bev_against_the_real_mesh_bev(preps, scene_id):
    _, root, _ = preps
    m = compare(*_bev(root / "fused", scene_id), *_bev(root / "real", scene_id))
    print(scene_id, m)
    assert m["precision"] >= 0.95, m
    assert m["recall"] >= 0.55, m
    assert m["colour_error"] <= 25, m


def test_posed_images_source_without_scans(preps, tmp_path):
    """The export's JPEGs are re-encoded (quality 75) and its axis alignment comes from the EmbodiedScan pkl."""
    synth_root, root, _ = preps
    described = [describe_synth(s) for s in make_scenes(2, seed=0)]  # the conftest's synth_root
    export_posed_images(synth_root / "scans", tmp_path / "export", described, stride=3, bev_size=64)
    (tmp_path / "no_scans").mkdir()
    sources = SourceOptions(source="posed-images", posed_images=str(tmp_path / "export" / "posed_images"),
                            embodiedscan_infos=(str(tmp_path / "export" / "embodiedscan" / "embodiedscan_infos.pkl"),))
    report = prep_scannet(tmp_path / "no_scans", tmp_path / "prep", PrepOptions(**OPTIONS, fuse_mesh=True,
                                                                              sources=sources))
    assert report.ok == SCENES, report.failed
    for scene_id in SCENES:
        m = compare(*_bev(tmp_path / "prep", scene_id), *_bev(root / "real", scene_id))
        assert m["precision"] >= 0.95 and m["recall"] >= 0.55 and m["colour_error"] <= 25, m


@pytest.mark.parametrize("scene_id", SCENES)
def test_max_coverage_on_the_fused_mesh(preps, scene_id):
    synth_root, root, _ = preps
    ours = real_voxels_covered(synth_root / "scans", root / "fused", scene_id, "max-coverage")
    best = real_voxels_covered(synth_root / "scans", root / "real", scene_id, "max-coverage")
    assert ours >= 0.95 * best


def test_manifest_says_fused(preps):
    _, root, report = preps
    manifest = json.loads((root / "fused" / "manifest.json").read_text())
    assert manifest["options"]["fuse_mesh"] and manifest["options"]["fuse_voxel_size"] == 0.04
    for scene_id in SCENES:
        entry = manifest["scenes"][scene_id]
        assert entry["mesh_source"] == "fused" and entry["bev_source"] == "fused"
        assert entry["timings"]["fusion"] > 0
        assert any("objects and membership are missing" in w for w in report.warnings[scene_id])
    assert pq.read_table(root / "fused" / "objects.parquet").num_rows == 0
    real = json.loads((root / "real" / "manifest.json").read_text())
    assert real["scenes"][SCENES[0]]["mesh_source"] == "scan" and real["scenes"][SCENES[0]]["bev_source"] == "rendered"
    assert "fuse_mesh" not in real["options"]


def test_generic_layout_export_with_fused_meshes(preps, tmp_path):
    """`ross3d synth --export posed-rgbd` writes the generic layout from the .sens; prepared with --fuse-mesh against
    the meshless scans folder (axis alignment from its <scene>.txt) it keeps the .sens frames byte for byte and meets
    the BEV bounds against the real-mesh prep."""
    synth_root, root, _ = preps
    export_posed_rgbd(synth_root / "scans", tmp_path, stride=3)
    sources = SourceOptions(source="posed-rgbd", rgbd=str(tmp_path / "rgbd"))
    report = prep_scannet(root / "scans", tmp_path / "prep", PrepOptions(**OPTIONS, fuse_mesh=True, sources=sources))
    assert report.ok == SCENES, report.failed
    for scene_id in SCENES:
        ours = pq.read_table(tmp_path / "prep" / "scenes" / scene_id / "frames.parquet").to_pydict()
        real = pq.read_table(root / "real" / "scenes" / scene_id / "frames.parquet").to_pydict()
        assert ours["frame_idx"] == real["frame_idx"] and ours["color_jpeg"] == real["color_jpeg"]
        assert ours["valid"] == real["valid"]
        m = compare(*_bev(tmp_path / "prep", scene_id), *_bev(root / "real", scene_id))
        assert m["precision"] >= 0.95 and m["recall"] >= 0.55 and m["colour_error"] <= 25, m


def test_synth_cli_exports_posed_rgbd(tmp_path):
    result = CliRunner().invoke(app, ["synth", "scannet", str(tmp_path), "--scenes", "1", "--frames", "20",
                                      "--color-size", "80x60", "--depth-size", "40x30", "--export", "posed-rgbd"])
    assert result.exit_code == 0, result.output
    scene = tmp_path / "rgbd" / "scene0000_00"
    assert sorted(p.name for p in (scene / "depth").iterdir()) == ["0.png", "10.png"]
    assert np.loadtxt(scene / "intrinsic_depth.txt").shape == (3, 3)


def test_one_frame_of_a_wall():
    """A single grey frame of a fronto-parallel wall 3 m away (160x120, fx = fy = 144, principal point at the image
    centre, identity pose) fuses into a flat grey patch at z = 3 m whose x extent is the frustum's at 3 m,
    3 * 79.5 / 144 = 1.656 m either side, within a voxel (0.04 m): a surface seen once is kept."""
    import cv2

    from ross3d.prep.fusion import TsdfFusion
    from ross3d.synth.capture import intrinsics

    k = intrinsics(160, 120)
    fusion = TsdfFusion(k, k, 1000.0)
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    fusion.integrate(np.full((120, 160), 3000, np.uint16), jpeg, np.eye(4))
    mesh = fusion.mesh("wall")
    np.testing.assert_allclose(mesh.vertices[:, 2], 3.0, atol=1e-3)
    half = 3 * 79.5 / 144
    assert half - 0.04 <= -mesh.vertices[:, 0].min() <= half and half - 0.04 <= mesh.vertices[:, 0].max() <= half
    assert np.abs(mesh.colors.astype(int) - 128).max() <= 2
