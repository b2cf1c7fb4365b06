"""`ross3d synth scannet --export posed-images` on the session's synthetic dataset, then `prep scannet` from the
`.sens` and from the exported posed_images of the same scenes (with the exported EmbodiedScan pkl): same kept
frames and uniform selection, max-coverage covering the same voxels within 1%, world coordinates within 1 mm,
identical objects and rendered BEV; the exported box and selection files in the original's formats."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from typer.testing import CliRunner

from ross3d_cli.app import app

PREP = ["--frame-stride", "10", "--num-frames", "4", "--bev-size", "64"]


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
    out, a, b, output = exported
    records = {r["video_id"].split("/")[1]: r for r in
               json.loads((out / "metadata" / "scannet_select_frames.json").read_text())}
    manifest = json.loads((b / "manifest.json").read_text())
    for scene_id, record in records.items():
        theirs = sorted(int(f.rsplit("/", 1)[1][:5]) for f in record["frame_files"][:4])
        picked = [r["frame_idx"] for r in _rows(b, "selections.parquet")
                  if r["scene_id"] == scene_id and r["strategy"] == "max-coverage"]
        assert picked == theirs
        ours = {r["frame_idx"] for r in _rows(a, "selections.parquet")
                if r["scene_id"] == scene_id and r["strategy"] == "max-coverage"}
        agreement = manifest["scenes"][scene_id]["selection_agreement"]
        assert agreement["shared_frames"] == len(ours & set(theirs))
        assert f"{scene_id}: {len(ours & set(theirs))}/4 frames shared" in output
    assert "selection file vs ours, overall" in output


def test_box_files_match_objects(exported):
    out, a, _, _ = exported
    gt = json.loads((out / "metadata" / "scannet_train_gt_box.json").read_text())
    assert gt and set(gt) <= {f"scannet/{s}" for s in {r["scene_id"] for r in _rows(a, "objects.parquet")}}
    for key, boxes in gt.items():
        ours = [r["box"] for r in _rows(a, "objects.parquet") if r["scene_id"] == key.split("/")[1]]
        np.testing.assert_allclose(boxes, ours, atol=1e-5)
    pred = json.loads((out / "metadata" / "scannet_val_pred_box.json").read_text())
    assert set(pred) == set(json.loads((out / "metadata" / "scannet_val_gt_box.json").read_text()))
