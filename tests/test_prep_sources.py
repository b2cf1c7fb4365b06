"""`ross3d prep scannet --source posed-images` against `.sens` prep of the same hand-made scans exported by
ross3d.synth.posed_export: same kept frames, depth and uniform selection, max-coverage within 1% of covered voxels,
world coordinates within 1 mm, identical objects and rendered BEV; mesh-less scenes with EmbodiedScan infos,
released BEV, selection file and box file; bad inputs fail their scene with a message naming the file. The export's
selection file and BEV come from the scene description (tests/prep_scannet_scene.describe), not from prep's code:
prep's max-coverage covers what the file's greedy covers within 1%, and prep's render matches the released-style
BEV up to JPEG loss."""

import json
import pickle
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

from prep_scannet_scene import describe, write_scene
from released_compare import JPEG_MEAN, ambiguous_pixels, bev_agreement
from ross3d.errors import ConfigError
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet
from ross3d.prep.sources import SourceOptions
from ross3d.synth.posed_export import export_posed_images
from ross3d_cli.app import app

OPTIONS = PrepOptions(frame_stride=2, num_frames=8, bev_size=64)
GOOD = ["scene0000_00", "scene0001_00"]


def _options(**sources) -> PrepOptions:
    return PrepOptions(frame_stride=2, num_frames=8, bev_size=64, sources=SourceOptions(**sources))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    scans = root / "scans"
    for i, s in enumerate(GOOD):
        write_scene(scans, s, seed=i, keep=False)
    export = root / "export"
    export_posed_images(scans, export, [describe(s) for s in GOOD], stride=2, bev_size=64)
    sens = prep_scannet(scans, root / "sens", OPTIONS)
    posed = prep_scannet(scans, root / "posed",
                         _options(source="posed-images", posed_images=str(export / "posed_images")))
    assert sorted(sens.ok) == GOOD and sorted(posed.ok) == GOOD, (sens.failed, posed.failed)
    return root, scans, export, posed


def _table(prep, name, scene_id=None):
    rows = pq.read_table(prep / name).to_pylist()
    return [r for r in rows if scene_id is None or r["scene_id"] == scene_id]


def _selection(prep, scene_id, strategy):
    return [(r["frame_idx"], r["new_voxels"]) for r in _table(prep, "selections.parquet", scene_id)
            if r["strategy"] == strategy]


def test_posed_images_prep_equals_sens_prep(both):
    root, _, export, _ = both
    a, b = root / "sens", root / "posed"
    for scene_id in GOOD:
        fa = pq.read_table(a / "scenes" / scene_id / "frames.parquet").to_pydict()
        fb = pq.read_table(b / "scenes" / scene_id / "frames.parquet").to_pydict()
        assert fa["frame_idx"] == fb["frame_idx"] == list(range(0, 40, 2)) and fa["valid"] == fb["valid"]
        np.testing.assert_allclose(np.array(fb["pose"])[fb["valid"]], np.array(fa["pose"])[fa["valid"]], atol=1e-6)
        for idx, jpeg in zip(fb["frame_idx"], fb["color_jpeg"]):  # the export's bytes, verbatim
            assert jpeg == (export / "posed_images" / scene_id / f"{idx:05d}.jpg").read_bytes()
        za, zb = (zarr.open_group(p / "scenes" / scene_id / "arrays.zarr") for p in (a, b))
        np.testing.assert_array_equal(za["depth"][:], zb["depth"][:])
        assert _selection(a, scene_id, "uniform") == _selection(b, scene_id, "uniform")
        np.testing.assert_allclose(zb["coords/uniform"][:], za["coords/uniform"][:], atol=1e-3)
        covered = [sum(g for _, g in _selection(p, scene_id, "max-coverage")) for p in (a, b)]
        assert abs(covered[0] - covered[1]) <= 0.01 * covered[0]
        np.testing.assert_array_equal(za["bev/rgb"][:], zb["bev/rgb"][:])
        np.testing.assert_array_equal(za["bev/valid"][:], zb["bev/valid"][:])
        # the %f pose text may move a pixel across a box face: allow a few patches in a thousand
        assert (za["membership/uniform"][:] != zb["membership/uniform"][:]).mean() < 1e-3
    assert json.dumps(_table(a, "objects.parquet")) == json.dumps(_table(b, "objects.parquet"))  # NaN boxes too
    sa, sb = _table(a, "scenes.parquet"), _table(b, "scenes.parquet")
    for ra, rb in zip(sa, sb):
        assert (rb["n_frames_total"], rb["n_frames_kept"], rb["n_frames_invalid"]) == (20, 20, 2)
        assert {k: v for k, v in ra.items() if k != "n_frames_total"} == {k: v for k, v in rb.items()
                                                                          if k != "n_frames_total"}
    manifest = json.loads((b / "manifest.json").read_text())
    assert manifest["inputs"]["source"] == "posed-images"
    assert {s["bev_source"] for s in manifest["scenes"].values()} == {"rendered"}
    assert manifest["options_fingerprint"] != json.loads((a / "manifest.json").read_text())["options_fingerprint"]


def test_export_layout(both):
    _, scans, export, _ = both
    from ross3d.scannet.sens import SensReader

    scene = export / "posed_images" / GOOD[0]
    with SensReader(scans / GOOD[0] / f"{GOOD[0]}.sens") as reader:
        frames = {f.index: f for f in reader.frames(2)}
        k_depth = reader.header.intrinsic_depth
    assert sorted(int(p.stem) for p in scene.glob("*.jpg")) == sorted(frames)
    import cv2

    depth = cv2.imread(str(scene / "00004.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and np.array_equal(depth, frames[4].depth)
    assert (scene / "00004.txt").read_text() == "".join(
        " ".join("%f" % v for v in row) + "\n" for row in frames[4].pose.astype(np.float64))
    assert (scene / "00010.txt").read_text().split()[0] == "-inf"  # the invalid frame
    assert np.allclose(np.loadtxt(scene / "depth_intrinsic.txt"), k_depth, atol=1e-6)
    decoded = np.asarray(Image.open(scene / "00004.jpg"))
    original = cv2.imdecode(np.frombuffer(frames[4].color_jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert decoded.shape == original.shape and np.abs(decoded.astype(int) - original).mean() < 8
    with open(export / "embodiedscan" / "embodiedscan_infos.pkl", "rb") as f:
        infos = pickle.load(f)
    item = next(i for i in infos["data_list"] if i["sample_idx"] == f"scannet/{GOOD[0]}")
    assert item["images"][2] == {"img_path": f"scannet/posed_images/{GOOD[0]}/00004.jpg",
                                 "depth_path": f"scannet/posed_images/{GOOD[0]}/00004.png",
                                 "cam2global": pytest.approx(frames[4].pose.astype(np.float64))}
    assert np.allclose(item["depth_cam2img"], k_depth) and item["axis_align_matrix"].shape == (4, 4)
    assert json.loads((export / "metadata" / "scannet_train_gt_box.json").read_text()) == {}  # the ghost object
    bev = Image.open(export / "bev" / GOOD[0] / "view_0.jpg")
    assert bev.size == (85, 64)  # int(64 * 64 / 48) x 64: the depth frame's 4:3 aspect


def test_released_bev_import_reproduces_the_original_crop(tmp_path):
    from ross3d.scannet.posed_images import load_released_bev

    rng = np.random.default_rng(3)
    image = (rng.integers(0, 255, (50, 90, 3))).astype(np.uint8)  # non-square, not 4:3
    path = tmp_path / "view_0.jpg"
    Image.fromarray(image).save(path, quality=95)
    rgb, valid = load_released_bev(path, (640, 480), 432)
    reference = np.asarray(Image.open(path).convert("RGB").resize((576, 432), Image.BICUBIC))[:, 72:504]
    np.testing.assert_array_equal(rgb, reference)
    np.testing.assert_array_equal(valid, reference.any(axis=-1))


def test_released_style_bev_round_trip(both):
    """Prep with --bev-images on the export's view_0.jpg (rasterised from the scene description) gets back prep's
    own render of the scan mesh up to JPEG loss (tests/released_compare.py; the cut slices no object here)."""
    root, scans, export, _ = both
    prep = root / "released"
    report = prep_scannet(scans, prep, _options(bev_images=str(export / "bev")), scenes=[GOOD[0]])
    assert report.ok == [GOOD[0]]
    rendered = zarr.open_group(root / "sens" / "scenes" / GOOD[0] / "arrays.zarr")["bev/rgb"][:]
    z = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr")
    ambiguous = ambiguous_pixels(describe(GOOD[0]), 64)
    m = bev_agreement(z["bev/rgb"][:], rendered, ambiguous)
    assert not ambiguous.any() and m["mean"] < JPEG_MEAN and m["other_surface"] == 0, m
    assert z["bev/valid"][:][rendered.any(-1)].all()  # JPEG ringing may only add valid pixels near edges
    assert np.isnan(z["bev/bounds"][:]).all()
    manifest = json.loads((prep / "manifest.json").read_text())
    assert manifest["scenes"][GOOD[0]]["bev_source"] == "released"


def _mesh_less_inputs(root, export):
    """An EmbodiedScan pkl listing every other exported frame of scene 0, and an empty scans folder."""
    with open(export / "embodiedscan" / "embodiedscan_infos.pkl", "rb") as f:
        infos = pickle.load(f)
    for item in infos["data_list"]:
        item["images"] = item["images"][::2]
    pkl = root / "subset_infos.pkl"
    pkl.write_bytes(pickle.dumps(infos))
    (root / "no_scans").mkdir(exist_ok=True)
    return pkl, root / "no_scans"


def test_mesh_less_scene_with_embodiedscan_infos(both):
    root, _, export, _ = both
    pkl, empty = _mesh_less_inputs(root, export)
    prep = root / "meshless"
    report = prep_scannet(empty, prep, _options(source="posed-images", posed_images=str(export / "posed_images"),
                                                embodiedscan_infos=(str(pkl),)), scenes=[GOOD[0]])
    assert report.ok == [GOOD[0]]
    warnings = " ".join(report.warnings[GOOD[0]])
    assert "max-coverage" in warnings and "BEV (give --bev-images)" in warnings and "objects and membership" in warnings
    frames = pq.read_table(prep / "scenes" / GOOD[0] / "frames.parquet").to_pydict()["frame_idx"]
    assert frames == list(range(0, 40, 4))  # the pkl's images list, original indices
    assert {r["strategy"] for r in _table(prep, "selections.parquet")} == {"uniform"}
    assert _table(prep, "objects.parquet") == []
    z = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr")
    assert "bev" not in z and "max-coverage" not in z["coords"]
    # axis alignment from the pkl: the same world coordinates as the .sens prep for a frame both selected
    sens = zarr.open_group(root / "sens" / "scenes" / GOOD[0] / "arrays.zarr")["coords/uniform"][:]
    ours = dict(zip([f for f, _ in _selection(prep, GOOD[0], "uniform")], z["coords/uniform"][:]))
    theirs = dict(zip([f for f, _ in _selection(root / "sens", GOOD[0], "uniform")], sens))
    shared = set(ours) & set(theirs)
    assert shared and all(np.allclose(ours[f], theirs[f], atol=1e-3) for f in shared)
    manifest = json.loads((prep / "manifest.json").read_text())
    assert manifest["scenes"][GOOD[0]]["bev_source"] == "none" and manifest["scenes"][GOOD[0]]["warnings"]


def test_mesh_less_scene_with_released_files(both):
    """Selection file, box file and released BEV fill in what the missing mesh and annotations cannot give."""
    root, _, export, _ = both
    pkl, empty = _mesh_less_inputs(root, export)
    boxes = {f"scannet/{GOOD[0]}": [b.tolist() for b in describe(GOOD[0]).object_boxes if b is not None]}
    box_file = root / "gt_box.json"
    box_file.write_text(json.dumps(boxes))
    prep = root / "meshless_full"
    report = prep_scannet(empty, prep, _options(
        source="posed-images", posed_images=str(export / "posed_images"), bev_images=str(export / "bev"),
        selection_file=str(export / "metadata" / "scannet_select_frames.json"), boxes_file=str(box_file)),
        scenes=[GOOD[0]])
    assert report.ok == [GOOD[0]]
    assert report.warnings[GOOD[0]] == [f"no mesh {empty / GOOD[0] / (GOOD[0] + '_vh_clean_2.ply')}: missing BEV "
                                        "bounds, voxel counts (new_voxels 0)"]
    objects = _table(prep, "objects.parquet")
    np.testing.assert_allclose([r["box"] for r in objects], boxes[f"scannet/{GOOD[0]}"], rtol=1e-6)
    z = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr")
    assert z["membership/max-coverage"].shape[0] == len(objects) and z["bev/rgb"].shape == (64, 64, 3)


def test_selection_file_is_honoured(both, tmp_path):
    root, scans, export, _ = both
    valid = [f for f, v in zip(*pq.read_table(root / "sens" / "scenes" / GOOD[0] / "frames.parquet")
                               .select(["frame_idx", "valid"]).to_pydict().values()) if v]
    order = valid[::-1][:10]  # their selection order; the consumer takes the first 8, then sorts
    path = tmp_path / "scannet_select_frames.json"
    path.write_text(json.dumps([{"video_id": f"scannet/{GOOD[0]}", "voxel_nums": list(range(10, 0, -1)),
                                 "frame_files": [f"data/scannet/posed_images/{GOOD[0]}/{f:05d}.jpg" for f in order],
                                 "num_all_voxels": 0, "num_select_voxels": 0}]))
    result = CliRunner().invoke(app, ["prep", "scannet", str(scans), str(tmp_path / "prep"), "--scenes", GOOD[0],
                                      "--frame-stride", "2", "--num-frames", "8", "--bev-size", "64",
                                      "--selection-file", str(path)])
    assert result.exit_code == 0, result.output
    picked = [f for f, _ in _selection(tmp_path / "prep", GOOD[0], "max-coverage")]
    assert picked == sorted(order[:8])
    ours = {f for f, _ in _selection(root / "sens", GOOD[0], "max-coverage")}
    shared = len(ours & set(order[:8]))
    assert f"{GOOD[0]}: {shared}/8 frames shared" in result.output and "overall: " in result.output
    manifest = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    agreement = manifest["scenes"][GOOD[0]]["selection_agreement"]
    assert agreement["shared_frames"] == shared
    assert agreement["covered_voxels_ours"] == sum(g for _, g in _selection(root / "sens", GOOD[0], "max-coverage"))


def test_selection_file_matches_our_max_coverage(both):
    """The export's selection file (the original's greedy written out in ross3d.synth.original_selection) against
    prep's max-coverage over the same candidates (every valid exported frame: fewer than 32 remain after [::2]):
    the first 8 picks cover the same voxels, counted with prep's voxels on their picks and on ours, within 1% (a
    point within a micrometre of a voxel face may round the other way in float32 and float64). The room is
    symmetric, so equal gains tie and the frames themselves may differ."""
    root, scans, export, _ = both
    path = export / "metadata" / "scannet_select_frames.json"
    record = next(r for r in json.loads(path.read_text()) if r["video_id"] == f"scannet/{GOOD[0]}")
    assert len(record["frame_files"]) == 18 and record["num_all_voxels"] == record["num_select_voxels"]
    report = prep_scannet(scans, root / "with_selection", _options(selection_file=str(path)), scenes=[GOOD[0]])
    agreement = report.agreement[GOOD[0]]
    covered = sum(record["voxel_nums"][:8])
    assert covered > 0 and agreement["num_frames"] == 8
    assert abs(agreement["covered_voxels_theirs"] - covered) <= 0.01 * covered
    assert abs(agreement["covered_voxels_ours"] - covered) <= 0.01 * covered


def _damage_cases(posed: "Path"):
    def drop_depth(d):
        (d / "00004.png").unlink()

    def bad_pose(d):
        (d / "00006.txt").write_text("1 0 0\n0 1 0\n")

    def bad_intrinsic(d):
        (d / "depth_intrinsic.txt").write_text("fx = 1\n")

    return {"scene0100_00": (drop_depth, "00004.png: depth file missing"),
            "scene0101_00": (bad_pose, "00006.txt: expected 16 numbers"),
            "scene0102_00": (bad_intrinsic, "depth_intrinsic.txt: not a 4x4 matrix")}


def test_bad_input_fails_the_scene_naming_the_file(both, tmp_path):
    _, _, export, _ = both
    posed = tmp_path / "posed_images"
    shutil.copytree(export / "posed_images" / GOOD[0], posed / GOOD[0])
    cases = _damage_cases(posed)
    for scene_id, (damage, _) in cases.items():
        shutil.copytree(export / "posed_images" / GOOD[0], posed / scene_id)
        damage(posed / scene_id)
    (tmp_path / "scans").mkdir()
    report = prep_scannet(tmp_path / "scans", tmp_path / "prep",
                          _options(source="posed-images", posed_images=str(posed)))
    assert report.ok == [GOOD[0]]
    for scene_id, (_, message) in cases.items():
        assert message in report.failed[scene_id], report.failed[scene_id]
    # a pkl without the scene
    with open(export / "embodiedscan" / "embodiedscan_infos.pkl", "rb") as f:
        infos = pickle.load(f)
    infos["data_list"] = [i for i in infos["data_list"] if i["sample_idx"] != f"scannet/{GOOD[0]}"]
    pkl = tmp_path / "infos.pkl"
    pkl.write_bytes(pickle.dumps(infos))
    report = prep_scannet(tmp_path / "scans", tmp_path / "prep2", _options(
        source="posed-images", posed_images=str(posed), embodiedscan_infos=(str(pkl),)), scenes=[GOOD[0]])
    assert str(pkl) in report.failed[GOOD[0]] and f"no 'scannet/{GOOD[0]}'" in report.failed[GOOD[0]]


def test_source_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="--posed-images"):
        SourceOptions(source="posed-images")
    with pytest.raises(ConfigError, match="--source must be one of"):
        SourceOptions(source="zip")
    assert _options().fingerprint() == OPTIONS.fingerprint()  # default inputs keep the fingerprint
    selection = tmp_path / "select.json"
    selection.write_text("[]")
    first = _options(selection_file=str(selection)).fingerprint()
    assert first != OPTIONS.fingerprint()
    selection.write_text("[ ]")
    assert _options(selection_file=str(selection)).fingerprint() != first  # the content counts, not the path
    assert _options(bev_images=str(tmp_path)).fingerprint() != OPTIONS.fingerprint()
