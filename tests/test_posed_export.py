"""`ross3d synth scannet --export posed-images` on the session's synthetic dataset, then `prep scannet` from the
`.sens`, from the exported posed_images of the same scenes (with the exported EmbodiedScan pkl and selection file)
and with the exported BEVs: same kept frames and uniform selection, world coordinates within 1 mm, identical
objects. The export derives the original's files from the scene description, not from prep's code, so these are
compatibility checks: prep's object boxes equal the box file's within float32 rounding, prep's max-coverage and
its voxel counts match the selection file's within 1%, prep's rendered BEV matches the released-style BEV up to
JPEG loss (tests/released_compare.py)."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from typer.testing import CliRunner

from released_compare import JPEG_MEAN, ambiguous_pixels, bev_agreement
from ross3d.synth.description import describe_synth
from ross3d.synth.scenes import make_scenes
from ross3d_cli.app import app

BEV_SIZE = 432  # the export's BEV size (the CLI's default), so the released import is not resampled
PREP = ["--frame-stride", "10", "--num-frames", "4", "--bev-size", str(BEV_SIZE)]


@pytest.fixture(scope="module")
def exported(synth_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("posed_export")
    out = root / "synth"
    shutil.copytree(synth_root, out)
    runner = CliRunner()
    result = runner.invoke(app, ["synth", "scannet", str(out), "--scenes", "2", "--frames", "60", "--color-size",
                                 "160x120", "--depth-size", "80x60", "--export", "posed-images"])
    assert result.exit_code == 0, result.output
    assert "already generated" in result.output and "exported 2 scenes" in result.output
    sens = runner.invoke(app, ["prep", "scannet", str(out / "scans"), str(root / "sens"), *PREP])
    assert sens.exit_code == 0, sens.output
    posed = runner.invoke(app, ["prep", "scannet", str(out / "scans"), str(root / "posed"), *PREP, "--source",
                                "posed-images", "--posed-images", str(out / "posed_images"), "--embodiedscan-infos",
                                str(out / "embodiedscan" / "embodiedscan_infos.pkl"), "--selection-file",
                                str(out / "metadata" / "scannet_select_frames.json")])
    assert posed.exit_code == 0, posed.output
    released = runner.invoke(app, ["prep", "scannet", str(out / "scans"), str(root / "released"), *PREP,
                                   "--bev-images", str(out / "bev")])
    assert released.exit_code == 0, released.output
    return out, root / "sens", root / "posed", posed.output


def _rows(prep, name):
    return pq.read_table(prep / name).to_pylist()


def test_same_outputs_from_sens_and_posed_images(exported):
    out, a, b, _ = exported
    scenes = sorted(p.name for p in (out / "posed_images").iterdir())
    assert len(scenes) == 2
    sel_a, sel_b = _rows(a, "selections.parquet"), _rows(b, "selections.parquet")
    for scene_id in scenes:
        frames = [pq.read_table(p / "scenes" / scene_id / "frames.parquet").select(["frame_idx", "valid"]).to_pydict()
                  for p in (a, b)]
        assert frames[0] == frames[1]
        uniform = [[r["frame_idx"] for r in rows if r["scene_id"] == scene_id and r["strategy"] == "uniform"]
                   for rows in (sel_a, sel_b)]
        assert uniform[0] == uniform[1]
        za, zb = (zarr.open_group(p / "scenes" / scene_id / "arrays.zarr") for p in (a, b))
        np.testing.assert_allclose(zb["coords/uniform"][:], za["coords/uniform"][:], atol=1e-3)
        np.testing.assert_array_equal(za["bev/rgb"][:], zb["bev/rgb"][:])
    assert json.dumps(_rows(a, "objects.parquet")) == json.dumps(_rows(b, "objects.parquet"))


def test_selection_file_agreement_is_reported(exported):
    """Prep takes the file's first 4 picks in frame order, and its own max-coverage over the same candidates (the 5
    valid kept frames; the generator's candidates too: fewer than 32 remain after [::2]) covers what the original's
    greedy covers, counted with prep's voxels and with the generator's, within 1% (a point within a micrometre of
    a voxel face may round the other way in float32 and float64)."""
    out, a, b, output = exported
    records = {r["video_id"].split("/")[1]: r for r in
               json.loads((out / "metadata" / "scannet_select_frames.json").read_text())}
    manifest = json.loads((b / "manifest.json").read_text())
    assert len(records) == 2
    for scene_id, record in records.items():
        theirs = sorted(int(f.rsplit("/", 1)[1][:5]) for f in record["frame_files"][:4])
        assert len(record["frame_files"]) == 5 and record["frame_files"][0].startswith(
            f"data/scannet/posed_images/{scene_id}/")
        picked = [r["frame_idx"] for r in _rows(b, "selections.parquet")
                  if r["scene_id"] == scene_id and r["strategy"] == "max-coverage"]
        assert picked == theirs
        ours = [r for r in _rows(a, "selections.parquet")
                if r["scene_id"] == scene_id and r["strategy"] == "max-coverage"]
        agreement = manifest["scenes"][scene_id]["selection_agreement"]
        assert agreement["shared_frames"] == len({r["frame_idx"] for r in ours} & set(theirs))
        assert f"{scene_id}: {agreement['shared_frames']}/4 frames shared" in output
        covered = sum(record["voxel_nums"][:4])  # the generator's voxels, its greedy's first 4 picks
        assert covered > 0 and record["num_select_voxels"] == sum(record["voxel_nums"])
        assert abs(agreement["covered_voxels_theirs"] - covered) <= 0.01 * covered  # prep's voxels, their picks
        assert abs(agreement["covered_voxels_ours"] - covered) <= 0.01 * covered  # prep's voxels and greedy
        assert sum(r["new_voxels"] for r in ours) == agreement["covered_voxels_ours"]
    assert "selection file vs ours, overall" in output


def test_box_files_match_objects(exported):
    """The box file holds the generator's own boxes (from the vertices it placed, float64); prep reads the mesh back
    from the PLY (float32 raw coordinates, a few metres: 5e-7 m steps), keeps float32 boxes, and the file rounds to 6
    decimals: 5e-6 m bounds all three with room to spare (measured at most 6.7e-7 m)."""
    out, a, _, _ = exported
    gt = json.loads((out / "metadata" / "scannet_train_gt_box.json").read_text())
    assert gt and set(gt) <= {f"scannet/{s}" for s in {r["scene_id"] for r in _rows(a, "objects.parquet")}}
    for key, boxes in gt.items():
        ours = [r["box"] for r in _rows(a, "objects.parquet") if r["scene_id"] == key.split("/")[1]]
        assert len(boxes) == len(ours) > 5
        np.testing.assert_allclose(boxes, ours, rtol=0, atol=5e-6)
    pred = json.loads((out / "metadata" / "scannet_val_pred_box.json").read_text())
    assert set(pred) == set(json.loads((out / "metadata" / "scannet_val_gt_box.json").read_text()))


@pytest.mark.parametrize("k", [0, 1])
def test_released_style_bev_matches_the_render(exported, k):
    """`prep --bev-images` on the export's view_0.jpg against prep's own render of the scan mesh."""
    out, a, _, _ = exported
    scene = describe_synth(make_scenes(2, seed=0)[k])  # the conftest's synth_root
    rendered = zarr.open_group(a / "scenes" / scene.scene_id / "arrays.zarr")
    released = zarr.open_group(a.parent / "released" / "scenes" / scene.scene_id / "arrays.zarr")
    m = bev_agreement(released["bev/rgb"][:], rendered["bev/rgb"][:], ambiguous_pixels(scene, BEV_SIZE))
    print(scene.scene_id, m)
    assert m["mean"] < JPEG_MEAN and m["other_surface"] == 0 and m["ambiguous"] < 0.01, m
    assert released["bev/valid"][:][rendered["bev/valid"][:]].all()  # JPEG ringing may only add valid pixels
