"""`ross3d prep scannet` end to end on hand-made scans: the PREP_DIR contract, verbatim bytes, invalid frames,
both selections against set-based references, membership sanity, BEV colours and holes, output bytes unchanged
since the per-frame code, failure isolation, resume, and a run killed with SIGKILL."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from typer.testing import CliRunner

from prep_scannet_scene import FLOOR_RGB, ROOM, TABLE_BOX, TABLE_RGB, write_scene
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet
from ross3d.prep.store import PAUSE_ENV
from ross3d.prep.selection import tie_priority
from ross3d_cli.app import app

OPTIONS = PrepOptions(frame_stride=2, num_frames=8, bev_size=64)
GOOD, BAD = ["scene0000_00", "scene0001_00"], "scene0002_00"


def _corrupt(scans: Path, scene_id: str) -> None:
    sens = scans / scene_id / f"{scene_id}.sens"
    data = sens.read_bytes()
    sens.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    scans = root / "scans"
    written = {s: write_scene(scans, s, seed=i) for i, s in enumerate(GOOD)}
    write_scene(scans, BAD, seed=5)
    _corrupt(scans, BAD)
    report = prep_scannet(scans, root / "prep", OPTIONS)
    return root, scans, root / "prep", written, report


def test_report_and_failure_isolation(prepared):
    _, scans, prep, _, report = prepared
    assert sorted(report.ok) == GOOD and list(report.failed) == [BAD]
    assert f"{BAD}.sens" in report.failed[BAD] and "truncated" in report.failed[BAD]
    rows = {r["scene_id"]: r for r in pq.read_table(prep / "scenes.parquet").to_pylist()}
    assert rows[BAD]["status"] == "failed" and "truncated" in rows[BAD]["error"]
    assert rows[BAD]["n_frames_kept"] is None
    assert all(rows[s]["status"] == "ok" and rows[s]["error"] is None for s in GOOD)
    assert not (prep / "scenes" / BAD).exists()
    assert sorted(p.name for p in (prep / "scenes").iterdir()) == GOOD  # no temp leftovers


def test_tables_contract(prepared):
    _, _, prep, written, _ = prepared
    scenes = pq.read_table(prep / "scenes.parquet")
    assert scenes.schema.names == ["scene_id", "n_frames_total", "n_frames_kept", "n_frames_invalid", "axis_align",
                                   "aligned", "color_width", "color_height", "depth_width", "depth_height",
                                   "intrinsic_color", "intrinsic_depth", "status", "error"]
    assert scenes.schema.field("axis_align").type == pa.list_(pa.float64(), 16)
    assert scenes.schema.field("intrinsic_depth").type == pa.list_(pa.float32(), 16)
    row = scenes.to_pylist()[0]
    assert (row["n_frames_total"], row["n_frames_kept"], row["n_frames_invalid"]) == (40, 20, 2)
    assert row["aligned"] and np.allclose(row["axis_align"], written[GOOD[0]]["axis"].ravel())
    assert (row["color_width"], row["color_height"], row["depth_width"], row["depth_height"]) == (80, 60, 64, 48)
    sel = pq.read_table(prep / "selections.parquet")
    assert sel.schema.names == ["scene_id", "strategy", "rank", "frame_idx", "new_voxels"]
    assert len(sel) == 2 * 2 * OPTIONS.num_frames
    objects = pq.read_table(prep / "objects.parquet")
    assert objects.schema.names == ["scene_id", "object_id", "label", "box", "n_vertices"]
    assert objects.schema.field("box").type == pa.list_(pa.float32(), 6)
    obj = {r["object_id"]: r for r in objects.to_pylist() if r["scene_id"] == GOOD[0]}
    assert obj[1]["label"] == "coffee table"
    lo, hi = np.array(TABLE_BOX[0]), np.array(TABLE_BOX[1])
    np.testing.assert_allclose(obj[1]["box"], np.r_[(lo + hi) / 2, hi - lo], atol=1e-5)
    assert obj[2]["n_vertices"] == 0 and np.isnan(obj[2]["box"]).all()
    manifest = json.loads((prep / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["options"] == OPTIONS.to_dict()
    assert manifest["options_fingerprint"] == OPTIONS.fingerprint()
    assert set(manifest["scenes"][GOOD[0]]["timings"]) == {"inputs", "sens_read", "fusion", "voxels", "selection",
                                                           "geometry", "objects", "bev", "write"}
    assert manifest["scenes"][BAD]["status"] == "failed"
    assert (prep / "previews" / f"{GOOD[0]}_bev.png").is_file()


def test_frames_verbatim_and_arrays_contract(prepared):
    _, _, prep, written, _ = prepared
    w = written[GOOD[0]]
    frames = pq.read_table(prep / "scenes" / GOOD[0] / "frames.parquet")
    assert frames.schema.names == ["frame_idx", "pose", "valid", "color_jpeg"]
    assert frames["frame_idx"].to_pylist() == list(range(0, 40, 2))
    assert frames["color_jpeg"].to_pylist() == w["jpegs"][::2]
    assert frames["valid"].to_pylist() == [i not in (10, 30) for i in range(0, 40, 2)]
    poses = np.array(frames["pose"].to_pylist(), np.float32).reshape(-1, 4, 4)
    np.testing.assert_array_equal(poses[0], w["poses"][0])
    arrays = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr", mode="r")
    np.testing.assert_array_equal(arrays["depth"][:], np.stack(w["depths"][::2]))
    k = OPTIONS.num_frames
    for strategy in ("uniform", "max-coverage"):
        assert arrays[f"coords/{strategy}"].shape == (k, 14, 14, 3)
        assert arrays[f"coords/{strategy}"].dtype == np.float32
        assert arrays[f"voxels/{strategy}"].dtype == np.int16 and arrays[f"voxels/{strategy}"].shape == (k, 14, 14, 3)
        assert arrays[f"membership/{strategy}"].shape == (3, k, 27, 27)
        assert arrays[f"membership/{strategy}"].dtype == bool
    assert arrays["bev/rgb"].shape == (64, 64, 3) and arrays["bev/rgb"].dtype == np.uint8
    assert arrays["bev/valid"].dtype == bool and arrays["bev/bounds"].dtype == np.float32


def _aligned_world(depth, pose_raw, axis, k):
    """Per-pixel aligned world points by the plain formula, for the references."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    z = depth / 1000.0
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z, np.ones_like(z)], -1)
    return (cam.reshape(-1, 4) @ (axis @ pose_raw.astype(np.float64)).T)[:, :3].reshape(h, w, 3)


def test_selections_match_references(prepared):
    from prep_scannet_scene import depth_intrinsic
    from test_prep_scannet_units import reference_greedy

    _, _, prep, written, _ = prepared
    w = written[GOOD[0]]
    sel = [r for r in pq.read_table(prep / "selections.parquet").to_pylist() if r["scene_id"] == GOOD[0]]
    kept = list(range(0, 40, 2))
    valid = [i for i in kept if i not in (10, 30)]
    uniform = [r["frame_idx"] for r in sorted(sel, key=lambda r: r["rank"]) if r["strategy"] == "uniform"]
    assert uniform == [valid[i] for i in np.linspace(0, len(valid) - 1, 8, dtype=int)]
    mesh = {tuple(v) for v in np.round(w["vertices"].astype(np.float32) / np.float32(0.1)).astype(int).tolist()}
    sets = []
    for i in valid:
        world = _aligned_world(w["depths"][i], w["poses"][i], w["axis"], depth_intrinsic())
        pts = world.reshape(-1, 3)  # zero-depth pixels count, at the camera centre (the original's default)
        sets.append(np.array(sorted({tuple(p) for p in np.round(pts / 0.1).astype(int).tolist()} & mesh)))
    ids = {t: n for n, t in enumerate(sorted(mesh))}
    sets = [np.array(sorted(ids[tuple(t)] for t in s)) for s in sets]
    picks, _ = reference_greedy(sets, 8, tie_priority(len(valid), OPTIONS.seed))
    mc = sorted((r for r in sel if r["strategy"] == "max-coverage"), key=lambda r: r["rank"])
    assert [r["frame_idx"] for r in mc] == [valid[p] for p in sorted(picks)]  # in frame order, as the original
    covered = set()
    for r, p in zip(mc, sorted(picks)):  # the new voxels each adds in that order
        assert r["new_voxels"] == len(set(sets[p].tolist()) - covered)
        covered |= set(sets[p].tolist())
    assert 10 not in uniform + [r["frame_idx"] for r in mc]


def test_membership_patches_lie_in_box(prepared):
    from prep_scannet_scene import depth_intrinsic

    _, _, prep, written, _ = prepared
    w = written[GOOD[0]]
    arrays = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr", mode="r")
    member = arrays["membership/uniform"][:]
    frames = [r["frame_idx"] for r in sorted(pq.read_table(prep / "selections.parquet").to_pylist(),
                                             key=lambda r: r["rank"])
              if r["scene_id"] == GOOD[0] and r["strategy"] == "uniform"]
    lo, hi = np.array(TABLE_BOX[0]) - 1e-4, np.array(TABLE_BOX[1]) + 1e-4
    assert member[1].any() and not member[2].any()  # the table is seen; the ghost (no vertices) never
    rows, cols = np.mgrid[0:14, 0:14]
    for v, i, j in zip(*np.nonzero(member[1])):
        world = _aligned_world(w["depths"][frames[v]], w["poses"][frames[v]], w["axis"], depth_intrinsic())
        # patch pixels on the 384 crop -> depth pixels (64x48 resized to 512x384, crop from column 64)
        p = world[((i * 14 + rows) * 48 // 384), ((j * 14 + cols + 64) * 64 // 512)]
        assert ((p >= lo) & (p <= hi)).all(-1).sum() >= 98


def test_bev_colours_and_no_holes(prepared):
    _, _, prep, _, _ = prepared
    arrays = zarr.open_group(prep / "scenes" / GOOD[0] / "arrays.zarr", mode="r")
    rgb, valid, (xmin, ymin, xmax, ymax) = arrays["bev/rgb"][:], arrays["bev/valid"][:], arrays["bev/bounds"][:]
    s = rgb.shape[0]
    xs = xmin + (np.arange(s) + 0.5) * (xmax - xmin) / s
    ys = ymax - (np.arange(s) + 0.5) * (ymax - ymin) / s

    def pixel(x, y):
        return rgb[np.argmin(abs(ys - y)), np.argmin(abs(xs - x))]

    assert pixel(0.0, 0.0).tolist() == list(TABLE_RGB)
    assert pixel(-1.5, 1.0).tolist() == list(FLOOR_RGB)
    assert pixel(1.7, 0.9).tolist() == list(FLOOR_RGB)  # under the tilted ceiling fragment
    inside = (np.abs(xs)[None, :] < ROOM[0] / 2 - 0.05) & (np.abs(ys)[:, None] < ROOM[1] / 2 - 0.05)
    outside = (np.abs(xs)[None, :] > ROOM[0] / 2 + 0.05) | (np.abs(ys)[:, None] > ROOM[1] / 2 + 0.05)
    assert valid[inside].all()
    assert not valid[outside].any() and (rgb[outside] == 0).all()
    assert (xmax - xmin) == pytest.approx(ymax - ymin) and (xmax - xmin) <= ROOM[0] / 0.9 + 1e-4


# sha256 (16 hex digits) of each array (dtype, shape, bytes) and table rows of GOOD[0], as written by the per-frame
# code of commit b6204bf (before the batched geometry) on x86-64 with numpy 2.4 / OpenBLAS 0.3.31. Another BLAS
# build may round the float32 rotation differently; regenerate them there from that commit.
BASE_DIGESTS = {
    "bev/bounds": "7278346c543d3758", "bev/rgb": "6c8f1a61369f04e0", "bev/valid": "df90af3d97a276d8",
    "coords/max-coverage": "17c900c3301b0c80", "coords/uniform": "50e1e8b70524dad9", "depth": "35cf573b1523ce7f",
    "frames": "b3f40a76fd82e979", "membership/max-coverage": "730df316ddf1c935",
    "membership/uniform": "69f7aecd88fcab72", "objects": "d561a2f4cef577c1", "scenes": "889df01a3d3b0cd6",
    "selections": "7b80875460a8477f", "voxels/max-coverage": "d4aca8751610b767", "voxels/uniform": "caf485947af9abcc",
}


def _digest(value) -> str:
    if isinstance(value, np.ndarray):
        value = f"{value.dtype.str}{value.shape}".encode() + value.tobytes()
    return hashlib.sha256(value if isinstance(value, bytes) else repr(value).encode()).hexdigest()[:16]


def test_output_bytes_unchanged_since_per_frame_code(prepared, tmp_path):
    """The batched geometry gives bitwise what the per-frame code of b6204bf gave. That code excluded zero-depth
    pixels and kept max-coverage frames in greedy order, so the two switches reproduce its settings."""
    _, scans, _, _, _ = prepared
    scene = GOOD[0]
    prep = tmp_path / "prep"
    old_settings = replace(OPTIONS, exclude_zero_depth=True, max_coverage_order="greedy")
    assert prep_scannet(scans, prep, old_settings, scenes=[scene]).ok == [scene]

    def arrays(group, prefix=""):
        out = {}
        for key, value in group.members():
            out.update({prefix + key: value[...]} if isinstance(value, zarr.Array) else arrays(value, f"{prefix}{key}/"))
        return out

    got = {k: _digest(v) for k, v in arrays(zarr.open_group(prep / "scenes" / scene / "arrays.zarr", mode="r")).items()}
    for table in ("scenes", "selections", "objects"):
        got[table] = _digest([r for r in pq.read_table(prep / f"{table}.parquet").to_pylist() if r["scene_id"] == scene])
    got["frames"] = _digest(pq.read_table(prep / "scenes" / scene / "frames.parquet").to_pylist())
    assert got == BASE_DIGESTS


def test_resume_skips_committed_and_retries_failed(prepared, tmp_path):
    _, scans, shared, _, _ = prepared
    prep = tmp_path / "prep"
    shutil.copytree(shared, prep)
    stamp = (prep / "scenes" / GOOD[0] / "result.json").stat().st_mtime_ns
    report = prep_scannet(scans, prep, OPTIONS)
    assert sorted(report.skipped) == GOOD and list(report.failed) == [BAD] and report.ok == []
    assert (prep / "scenes" / GOOD[0] / "result.json").stat().st_mtime_ns == stamp
    other = prep_scannet(scans, prep, PrepOptions(frame_stride=4, num_frames=4, bev_size=32), scenes=[GOOD[0]])
    assert other.ok == [GOOD[0]] and other.skipped == []


def test_cli_exit_codes(prepared):
    _, scans, prep, _, _ = prepared
    runner = CliRunner()
    args = ["prep", "scannet", str(scans), str(prep), "--frame-stride", "2", "--num-frames", "8", "--bev-size", "64"]
    failed = runner.invoke(app, args + ["--scenes", f"{GOOD[1]},{BAD}"])
    assert failed.exit_code == 1 and BAD in failed.output
    assert runner.invoke(app, args + ["--scenes", BAD, "--keep-going"]).exit_code == 0
    bad_option = runner.invoke(app, args + ["--executor", "spark"])
    assert bad_option.exit_code == 2 and "Invalid value for '--executor'" in bad_option.output
    assert "'spark' is not one of 'local', 'ray'" in bad_option.output
    missing = runner.invoke(app, ["prep", "scannet", str(scans / "nope"), str(prep)])
    assert missing.exit_code == 1 and "scans folder not found" in missing.output
    assert (prep / "manifest.json").is_file()  # a refused run leaves the previous result alone


def test_kill_9_leaves_nothing_half_done(tmp_path):
    scans = tmp_path / "scans"
    for i in range(3):
        write_scene(scans, f"scene000{i}_00", n_frames=60, seed=i)
    prep = tmp_path / "prep"
    code = ("import sys; from ross3d.prep.run import prep_scannet; from ross3d.prep.options import PrepOptions; "
            "prep_scannet(sys.argv[1], sys.argv[2], PrepOptions(frame_stride=1, num_frames=8, bev_size=64))")
    marker = tmp_path / "paused"  # the run stops right after committing its first scene (PAUSE_ENV), killed there
    proc = subprocess.Popen([sys.executable, "-c", code, str(scans), str(prep)],
                            env={**os.environ, PAUSE_ENV: f"1:{marker}"})
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (prep / "manifest.json").exists()  # a killed run never claims to be finished
    committed = [d for d in (prep / "scenes").iterdir() if not d.name.startswith(".")]
    assert [str(d) for d in committed] == [marker.read_text()]
    assert json.loads((committed[0] / "result.json").read_text())["status"] == "ok"
    zarr.open_group(committed[0] / "arrays.zarr", mode="r")["bev/rgb"][:]
    report = prep_scannet(scans, prep, PrepOptions(frame_stride=1, num_frames=8, bev_size=64))
    assert report.skipped == [committed[0].name] and len(report.ok) == 2
    assert not [p for p in (prep / "scenes").iterdir() if p.name.startswith(".")]


def test_inspect_scene_picture(prepared, tmp_path):
    from PIL import Image

    _, _, prep, _, _ = prepared
    result = CliRunner().invoke(app, ["inspect", "scene", str(prep), GOOD[0], "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    assert picture.shape[0] > 400 and picture.shape[1] > 800
    assert (np.abs(picture.astype(int) - TABLE_RGB).sum(-1) < 30).any()  # the BEV's table is drawn
    missing = CliRunner().invoke(app, ["inspect", "scene", str(prep), BAD, "--out", str(tmp_path / "b.png")])
    assert missing.exit_code == 1 and "no committed result.json" in " ".join(missing.output.split())
