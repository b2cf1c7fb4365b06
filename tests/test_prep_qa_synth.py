"""`prep qa` on the synthetic benchmark files: per-split row rules, exact prompts, unique/multiple from the scenes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ross3d.prep.options import PrepOptions
from ross3d.prep.qa.labels import nyu40_class, read_label_map
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.qa.schema import read_samples
from ross3d.prep.run import prep_scannet
from ross3d.synth.scenes import make_scenes


@pytest.fixture(scope="module")
def converted(synth_root, tmp_path_factory):
    prep = tmp_path_factory.mktemp("qa_synth") / "prep"
    assert prep_scannet(synth_root / "scans", prep, PrepOptions(frame_stride=10, num_frames=4)).failed == {}
    bench = synth_root / "benchmarks"
    report = prep_qa(prep, QaSources(bench / "scanqa", bench / "sqa_task", bench / "scanrefer",
                                     bench / "multi3drefer"),
                     label_map=synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    assert report.n_problems == 0, report.problem_lines()
    return read_samples(prep / "samples.parquet"), bench


def _native(bench, *parts):
    return json.loads(bench.joinpath(*parts).read_text())


def test_row_counts_follow_the_per_split_rules(converted):
    samples, bench = converted
    rows = Counter((s.task, s.split) for s in samples)
    scanqa_train = _native(bench, "scanqa", "ScanQA_v1.0_train.json")
    assert rows[("scanqa", "train")] == sum(len(r["answers"]) for r in scanqa_train)  # one row per answer
    assert rows[("scanqa", "val")] == len(_native(bench, "scanqa", "ScanQA_v1.0_val.json"))
    sqa_train = _native(bench, "sqa_task", "balanced", "v1_balanced_questions_train_scannetv2.json")["questions"]
    assert rows[("sqa3d", "train")] == sum(1 + len(q["alternative_situation"]) for q in sqa_train)
    refer_train = _native(bench, "scanrefer", "ScanRefer_filtered_train.json")
    assert rows[("scanrefer", "train")] == rows[("scan2cap", "train")] == len(refer_train)
    refer_val = _native(bench, "scanrefer", "ScanRefer_filtered_val.json")
    assert rows[("scan2cap", "val")] == len({(r["scene_id"], r["object_id"]) for r in refer_val})
    assert rows[("multi3drefer", "val")] == len(_native(bench, "multi3drefer", "multi3drefer_val.json"))


def test_prompts_are_the_originals(converted):
    samples, _ = converted
    first = {s.task: s for s in samples if s.split == "train"}
    assert first["scanqa"].prompt.startswith("<image> ") and first["scanqa"].prompt.endswith(
        " Answer the question simply.")
    assert first["sqa3d"].prompt.endswith(" Answer the question using a single word or phrase.")
    assert first["scan2cap"].prompt == "<image> Given an object located at <coord> , describe the object in detail."
    assert first["scanrefer"].prompt.startswith("<image>Identify the object according to the following description.\n")
    assert first["multi3drefer"].prompt.endswith(
        "\nThere may be no corresponding object, or there may be one or more objects.")
    assert first["scanrefer"].conversations[1] == ("gpt", "<ground>")


def test_unique_multiple_and_object_ids_follow_the_scenes(converted, synth_root):
    samples, _ = converted
    label_map = read_label_map(synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    rooms = {s.scene_id: s.room for s in make_scenes(2, seed=0)}
    n_unique = 0
    for s in samples:
        if s.task != "scanrefer":
            continue
        # every coloured object of a scene is described in each split: count its benchmark class among them
        described = [o for o in rooms[s.scene_id].objects if o.color_name]
        cls = nyu40_class(rooms[s.scene_id].objects[s.object_ids[0]].label, label_map)
        same_class = sum(nyu40_class(o.label, label_map) == cls for o in described)
        assert s.question_type == ("unique" if same_class == 1 else "multiple"), s.sample_id
        n_unique += s.question_type == "unique"
    assert 0 < n_unique < sum(s.task == "scanrefer" for s in samples)
    zero = [s for s in samples if s.task == "multi3drefer" and s.question_type.startswith("zt")]
    assert zero and all(s.object_ids == [] for s in zero)
    captions = [s for s in samples if s.task == "scan2cap" and s.split == "val"]
    assert all(s.box_input is not None and len(s.box_input) == 6 for s in captions)  # GT box without --proposals
