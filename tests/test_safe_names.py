"""Scene ids and benchmark names never become paths outside their roots: the issue's attacks (a `--scenes` id with
`../` placed so the path resolves, absolute ids, unsafe ids in scene lists, pkls, PREP tables and samples.parquet,
`eval run --benchmark ../../x`) are refused with one line naming where the id came from, and nothing outside the
roots is touched."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prep_scannet_scene import write_scene
from qa_helpers import write_json, write_objects
from typer.testing import CliRunner

from ross3d.cache.inputs import read_prep
from ross3d.cache.store import scene_path
from ross3d.errors import InputError
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.qa.schema import Sample, read_samples, write_samples
from ross3d.prep.run import read_scene_list
from ross3d.safe_names import RULE, child_path, is_safe_name
from ross3d.scannet.posed_images import load_box_file, load_embodiedscan_infos, load_selection_file
from ross3d_cli.app import app

ATTACKS = ["../../victim/scene0000_00", "/tmp/scene0000_00", "..", ".", "", ".scene0000_00", "scene0000_00/..",
           "a/b", "scene..x", "scene 0", "-rf", "x" * 129, "scene\n0", "sc\x00ene"]
SAFE = ["scene0000_00", "scene0706_02", "room-1.v2", "A", "x" * 128]


def _line(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines


def test_rule_accepts_scannet_ids_and_refuses_attacks(tmp_path):
    assert all(is_safe_name(s) for s in SAFE)
    assert not any(is_safe_name(s) for s in ATTACKS)
    assert not is_safe_name(None) and not is_safe_name(7)
    for name in SAFE:  # every accepted name joins to a direct child of the root
        assert os.path.dirname(os.path.normpath(child_path(tmp_path, name))) == str(tmp_path)
    with pytest.raises(InputError, match=rf"^{tmp_path}: scene id '\.\./x' is not a safe name \("):
        child_path(tmp_path, "../x")


def _victim_input(root):
    """A real scan at root/victim/scene0000_00, its files also one level up, where SCANS_DIR/<id>/<id>.sens of the
    id ../../victim/scene0000_00 resolves."""
    write_scene(root / "victim", "scene0000_00", n_frames=8, invalid=())
    for f in (root / "victim" / "scene0000_00").iterdir():
        shutil.copy(f, root / "victim" / f.name)


def test_prep_refuses_traversal_and_absolute_ids(tmp_path):
    work = tmp_path / "work"
    (work / "scans").mkdir(parents=True)
    _victim_input(tmp_path)
    precious = work / "victim" / "scene0000_00" / "precious.txt"  # where PREP_DIR/scenes/<id> resolves
    precious.parent.mkdir(parents=True)
    precious.write_text("keep me")
    runner = CliRunner()
    for bad in ("../../victim/scene0000_00", str(tmp_path / "victim" / "scene0000_00")):
        result = runner.invoke(app, ["prep", "scannet", str(work / "scans"), str(work / "prep"), "--scenes", bad,
                                     "--frame-stride", "2", "--num-frames", "2", "--bev-size", "32"])
        assert result.exit_code == 1
        assert _line(result.output) == f"error: --scenes: scene id {bad!r} is not a safe name ({RULE})"
    assert precious.read_text() == "keep me" and sorted(p.name for p in precious.parent.iterdir()) == ["precious.txt"]
    assert not (work / "prep").exists()


def test_scene_list_names_file_and_line(tmp_path):
    path = tmp_path / "scenes.txt"
    path.write_text("scene0000_00\n\n../x\n")
    with pytest.raises(InputError) as err:
        read_scene_list(path)
    assert str(err.value) == f"{path}: line 3: scene id '../x' is not a safe name ({RULE})"


def test_pkl_scene_id(tmp_path):
    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps({"data_list": [{"sample_idx": "scannet/../../x", "images": []}]}))
    with pytest.raises(InputError) as err:
        load_embodiedscan_infos([path])
    assert str(err.value) == f"{path}: scannet/../../x: scene id '../../x' is not a safe name ({RULE})"


def test_selection_and_box_file_scene_ids(tmp_path):
    selection, boxes = tmp_path / "scannet_select_frames.json", tmp_path / "scannet_train_gt_box.json"
    selection.write_text(json.dumps([{"video_id": "scannet/..", "frame_files": ["00000.jpg"]}]))
    boxes.write_text(json.dumps({"scannet/.hidden": [[0, 0, 0, 1, 1, 1]]}))
    with pytest.raises(InputError) as err:
        load_selection_file(selection)
    assert str(err.value) == f"{selection}: record 0: scene id '..' is not a safe name ({RULE})"
    with pytest.raises(InputError) as err:
        load_box_file(boxes)
    assert str(err.value) == f"{boxes}: scannet/.hidden: scene id '.hidden' is not a safe name ({RULE})"


def test_prep_tables_read_by_cache(tmp_path):
    manifest = {"options_fingerprint": "0" * 16, "options": {"bev_size": 432}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    pq.write_table(pa.table({"scene_id": ["scene0000_00", "../outside"], "depth_width": [4, 4],
                             "depth_height": [3, 3], "status": ["ok", "ok"]}), tmp_path / "scenes.parquet")
    with pytest.raises(InputError) as err:
        read_prep(tmp_path, ("uniform",))
    assert str(err.value) == f"{tmp_path / 'scenes.parquet'}: scene id '../outside' is not a safe name ({RULE})"
    with pytest.raises(InputError, match="scene id '/etc' is not a safe name"):
        scene_path(tmp_path / "cache", "/etc")


def test_samples_parquet_scene_id(tmp_path):
    path = tmp_path / "samples.parquet"
    write_samples(path, [Sample("scanqa/val/1", "val", "scanqa", "../cache/scene0000_00",
                                [("human", "Q?"), ("gpt", "a")], ["a"])])
    with pytest.raises(InputError) as err:  # train, eval run and the baselines read samples.parquet this way
        read_samples(path)
    assert str(err.value) == (f"{path}: sample scanqa/val/1: scene id '../cache/scene0000_00' is not a safe name "
                              f"({RULE})")


def test_benchmark_record_scene_id_is_a_bad_record(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    good = {"answers": ["a"], "object_ids": [], "question": "Q?", "scene_id": "scene0000_00"}
    write_json(tmp_path / "qa" / "ScanQA_v1.0_val.json", [{**good, "question_id": "q0"},
                                                         {**good, "question_id": "q1", "scene_id": "../../x"}])
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "qa"))
    (((source, kind), entry),) = report.problems.items()
    assert (source, kind, entry.first_ids) == ("ScanQA_v1.0_val.json", f"scene id is not a safe name ({RULE})",
                                               ["q1"])


def test_eval_benchmark_name_cannot_leave_out(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(app, ["eval", "run", "--benchmark", "../../x", "--checkpoint", str(tmp_path),
                                      "--cache", str(tmp_path), "--samples", str(tmp_path / "s.parquet"),
                                      "--out", str(out)])
    assert result.exit_code == 2  # a usage error: --benchmark is a choice
    assert _line(result.output) == ("error: ross3d eval run: Invalid value for '--benchmark': Value error, '../../x' "
                                    "is not one of 'all', 'scanqa', 'sqa3d', 'scan2cap', 'scanrefer', 'multi3drefer'.")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
