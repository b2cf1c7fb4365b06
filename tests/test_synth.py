"""Synthetic ScanNet scenes: real raw layout, depth consistent with the mesh, annotations consistent with scenes."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import open3d as o3d

from ross3d.scannet.scene import object_boxes, read_axis_alignment, read_mesh, read_objects, scan_paths, \
    transform_points
from ross3d.scannet.sens import SensReader
from ross3d.synth.labels import COLORS
from ross3d.synth.scenes import generate_synthetic_dataset, make_scenes

SCENE = "scene0000_00"


def _aligned_mesh(paths):
    mesh = read_mesh(paths.mesh)
    align, aligned = read_axis_alignment(paths.meta)
    assert aligned
    return mesh, align, transform_points(align, mesh.vertices)


def test_layout_and_mesh(synth_root):
    paths = scan_paths(synth_root / "scans", SCENE)
    for f in (paths.sens, paths.mesh, paths.meta, paths.aggregation, paths.segs):
        assert f.is_file(), f
    assert b"\r\n" in paths.meta.read_bytes() and b"sceneType = Bedroom / Hotel" in paths.meta.read_bytes()
    mesh, align, verts = _aligned_mesh(paths)
    assert mesh.colors.dtype == np.uint8 and mesh.colors.std() > 10
    # The stored mesh is not axis-aligned; the alignment maps it to a room with its floor at z = 0.
    assert not np.allclose(align, np.eye(4))
    assert abs(verts[:, 2].min()) < 1e-4 and verts[:, 2].max() > 2.4


def test_depth_lies_on_the_mesh_surface(synth_root):
    paths = scan_paths(synth_root / "scans", SCENE)
    mesh, align, verts = _aligned_mesh(paths)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(verts.astype(np.float32), mesh.faces.astype(np.uint32))
    invalid, checked = [], 0
    with SensReader(paths.sens) as reader:
        k = reader.header.intrinsic_depth
        for frame in reader.frames(stride=7):
            if not frame.valid:
                invalid.append(frame.index)
                continue
            v, u = np.nonzero(frame.depth)
            z = frame.depth[v, u] / 1000.0
            cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], 1)
            world = transform_points(align @ frame.pose.astype(np.float64), cam)
            dist = scene.compute_distance(world.astype(np.float32)).numpy()
            assert np.percentile(dist, 99) < 0.005 and dist.max() < 0.02, frame.index
            checked += 1
    assert checked >= 6
    with SensReader(paths.sens) as reader:
        all_invalid = [f.index for f in reader.frames(decode_depth=False) if not f.valid]
    assert all_invalid == [15, 16, 40]


def test_objects_match_the_generator(synth_root):
    paths = scan_paths(synth_root / "scans", SCENE)
    _, _, verts = _aligned_mesh(paths)
    objects = read_objects(paths.aggregation, paths.segs, n_vertices=len(verts))
    boxes = object_boxes(objects, verts)
    room = make_scenes(2, seed=0)[0].room
    assert [(o.object_id, o.label) for o in objects] == [(o.object_id, o.label) for o in room.objects]
    np.testing.assert_allclose(boxes, np.stack([o.box for o in room.objects]), atol=1e-4)
    labels = [o.label for o in objects]
    assert labels[:6] == ["floor", "wall", "wall", "wall", "wall", "ceiling"] and len(labels) >= 11


def _load(root, *parts):
    return json.loads(root.joinpath("benchmarks", *parts).read_text())


def test_annotations_follow_from_the_scene(synth_root):
    rooms = {s.scene_id: s.room for s in make_scenes(2, seed=0)}
    scanqa = _load(synth_root, "scanqa", "ScanQA_v1.0_train.json")
    assert set(scanqa[0]) == {"answers", "object_ids", "object_names", "question", "question_id", "scene_id"}
    n_count_questions = 0
    for rec in scanqa:
        objs = {o.object_id: o for o in rooms[rec["scene_id"]].objects}
        if rec["question"].startswith("How many"):
            label = objs[rec["object_ids"][0]].label
            n = sum(o.label == label for o in objs.values())
            assert rec["answers"] == [["zero", "one", "two", "three", "four", "five", "six", "seven"][n]]
            n_count_questions += 1
        elif rec["question"].startswith("What color"):
            assert rec["answers"] == [objs[rec["object_ids"][0]].color_name]
    assert n_count_questions > 0
    refer = _load(synth_root, "scanrefer", "ScanRefer_filtered_val.json")
    assert {"scene_id", "object_id", "object_name", "ann_id", "description", "token"} <= set(refer[0])
    for rec in refer:
        obj = rooms[rec["scene_id"]].objects[int(rec["object_id"])]
        assert rec["object_name"] == obj.label.replace(" ", "_") and obj.color_name in rec["description"]
    multi = _load(synth_root, "multi3drefer", "multi3drefer_train.json")
    for scene_id, room in rooms.items():
        counts = Counter(o.label for o in room.objects if o.color_name)
        types = Counter(r["eval_type"] for r in multi if r["scene_id"] == scene_id)
        assert types["st_wo_d"] == sum(n == 1 for n in counts.values())
        assert types["mt"] == sum(n > 1 for n in counts.values())
        assert types["zt_w_d"] == 1 and types["zt_wo_d"] == 1  # about the release's share of empty answers
        (zt,) = [r for r in multi if r["scene_id"] == scene_id and r["eval_type"] == "zt_w_d"]
        label = zt["object_name"].replace("_", " ")
        (color,) = set(re.findall("[a-z]+", zt["description"])) & set(COLORS)
        assert counts[label] > 0 and color not in {o.color_name for o in room.objects if o.label == label}
    assert all((r["object_ids"] == []) == r["eval_type"].startswith("zt") for r in multi)
    questions = _load(synth_root, "sqa_task", "balanced", "v1_balanced_questions_train_scannetv2.json")["questions"]
    annotations = _load(synth_root, "sqa_task", "balanced",
                        "v1_balanced_sqa_annotations_train_scannetv2.json")["annotations"]
    assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
    assert {"question", "situation", "alternative_situation", "scene_id"} <= set(questions[0])
    assert annotations[0]["answers"][0].keys() == {"answer", "answer_confidence", "answer_id"}
    tsv = (synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:5] == ["id", "raw_category", "category", "count", "nyu40id"]


def test_sqa3d_val_and_test_situations_face_objects_faced_in_training(synth_root):
    """Parsed from the written files: every val/test colour question asks about an object (the label after "facing
    the") that some train situation of the scene faces, with the colour the scene gives it; of the scene's ordered
    pairs of unique objects, 9 train situations, then up to 6 more alternately val and test."""
    rooms = {s.scene_id: s.room for s in make_scenes(2, seed=0)}
    faced: dict[str, dict[str, set]] = {}
    for split in ("train", "val", "test"):
        questions = _load(synth_root, "sqa_task", "balanced",
                          f"v1_balanced_questions_{split}_scannetv2.json")["questions"]
        answers = {a["question_id"]: a["answers"][0]["answer"] for a in _load(
            synth_root, "sqa_task", "balanced", f"v1_balanced_sqa_annotations_{split}_scannetv2.json")["annotations"]}
        for scene_id in rooms:
            situations = {q["situation"] for q in questions if q["scene_id"] == scene_id}
            labels = Counter(o.label for o in rooms[scene_id].objects if o.color_name)
            pairs = sum(n == 1 for n in labels.values()) * (sum(n == 1 for n in labels.values()) - 1)
            held = min(15, pairs) - min(9, pairs)
            assert len(situations) == {"train": min(9, pairs), "val": (held + 1) // 2, "test": held // 2}[split]
            labels = {sit.split("facing the ")[1].rstrip(".") for sit in situations}
            faced.setdefault(scene_id, {})[split] = labels
        for q in questions:
            if q["question"].startswith("What color"):
                label = q["situation"].split("facing the ")[1].rstrip(".")
                (obj,) = [o for o in rooms[q["scene_id"]].objects if o.label == label and o.color_name]
                assert answers[q["question_id"]] == obj.color_name
    for scene_id, by_split in faced.items():
        assert by_split["val"] | by_split["test"] <= by_split["train"], (scene_id, by_split)


def test_generation_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        generate_synthetic_dataset(out, n_scenes=1, n_frames=6, seed=5, color_size=(64, 48), depth_size=(32, 24))
    for rel in ("scans/scene0000_00/scene0000_00.sens", "scans/scene0000_00/scene0000_00_vh_clean_2.ply",
                "benchmarks/scanqa/ScanQA_v1.0_val.json", "benchmarks/multi3drefer/multi3drefer_val.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert generate_synthetic_dataset(a, n_scenes=1, n_frames=6, seed=5, color_size=(64, 48),
                                      depth_size=(32, 24)) is None
