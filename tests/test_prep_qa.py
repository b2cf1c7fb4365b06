"""`prep qa` converters on hand-written records in each benchmark's native format: exact prompts, per-split
row rules, unique/multiple, Scan2Cap grouping, and the samples.parquet schema round trip."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from qa_helpers import box_of, write_json, write_label_map, write_objects

from ross3d.errors import ConfigError, InputError
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.qa.schema import SAMPLES_SCHEMA, Sample, read_samples, write_samples
from ross3d.prep.qa.sqa3d import question_type

Q1 = "What is in the right corner of room by curtains?"
SCANQA_TRAIN = [{"answers": ["brown cabinet with tv sitting in it", "cabinet"], "object_ids": [0],
                 "object_names": ["cabinet"], "question": Q1, "question_id": "train-scene0000-0",
                 "scene_id": "scene0000_00"}]
SCANQA_VAL = [{"answers": ["black chair", "chair"], "object_ids": [0, 1], "object_names": ["chair", "chair"],
               "question": "What is under the desk?", "question_id": "val-scene0001-3", "scene_id": "scene0001_00"}]
SQA_QUESTIONS = {"questions": [
    {"scene_id": "scene0000_00", "situation": "I am sitting on the chair.", "alternative_situation":
     ["I just sat down.", "I rest on a seat."], "question": "Which direction should I go?", "question_id": 7},
    {"scene_id": "scene0001_00", "situation": "I face the table.", "alternative_situation": [],
     "question": "is the door open?", "question_id": 8},
    {"scene_id": "scene0001_00", "situation": "I stand.", "alternative_situation": [],
     "question": "Where is the lamp?", "question_id": 9},
]}
SQA_ANSWERS = {"annotations": [
    {"scene_id": "scene0000_00", "question_id": 7, "answers": [{"answer": "right", "answer_id": 1}]},
    {"scene_id": "scene0001_00", "question_id": 8, "answers": [{"answer": "yes", "answer_id": 1}]},
    {"scene_id": "scene0001_00", "question_id": 9, "answers": [{"answer": "left", "answer_id": 1}]},
]}


def _refer(scene, oid, name, desc, ann="0"):
    return {"scene_id": scene, "object_id": str(oid), "object_name": name, "ann_id": ann, "description": desc,
            "token": desc.split()}


SCANREFER_TRAIN = [
    _refer("scene0000_00", 0, "chair", "this is a chair. It is near the TV."),
    _refer("scene0000_00", 1, "chair", "a brown chair."),
    _refer("scene0000_00", 2, "table", "the table in the middle."),
    _refer("scene0000_00", 3, "toaster_oven", "a toaster oven."),
    _refer("scene0000_00", 5, "pillow", "a soft pillow."),
    _refer("scene0001_00", 0, "chair", "the only chair."),
    _refer("scene0001_00", 1, "kitchen_cabinets", "white cabinets."),
]
SCANREFER_VAL = [
    _refer("scene0000_00", 0, "chair", "this is a chair.", "0"),
    _refer("scene0000_00", 0, "chair", "a grey chair by the TV.", "1"),
    _refer("scene0000_00", 2, "table", "it is a table.", "0"),
]
MULTI_VAL = [
    {"scene_id": "scene0000_00", "object_names": [], "object_ids": [], "ann_id": 0,
     "description": "the red sofa.", "eval_type": "zt_w_d"},
    {"scene_id": "scene0000_00", "object_names": ["chair"], "object_ids": [1], "ann_id": 1,
     "description": "a chair right of the other chair.", "eval_type": "st_w_d"},
    {"scene_id": "scene0000_00", "object_names": ["chair", "chair"], "object_ids": [0, 1], "ann_id": 2,
     "description": "both chairs.", "eval_type": "mt"},
]


@pytest.fixture
def bench(tmp_path):
    """A PREP_DIR with objects.parquet and the four benchmark folders as downloaded."""
    prep = tmp_path / "prep"
    write_objects(prep)
    root = tmp_path / "benchmarks"
    write_json(root / "scanqa" / "ScanQA_v1.0_train.json", SCANQA_TRAIN)
    write_json(root / "scanqa" / "ScanQA_v1.0_val.json", SCANQA_VAL)
    write_json(root / "sqa_task" / "balanced" / "v1_balanced_questions_train_scannetv2.json", SQA_QUESTIONS)
    write_json(root / "sqa_task" / "balanced" / "v1_balanced_sqa_annotations_train_scannetv2.json", SQA_ANSWERS)
    write_json(root / "scanrefer" / "ScanRefer_filtered_train.json", SCANREFER_TRAIN)
    write_json(root / "scanrefer" / "ScanRefer_filtered_val.json", SCANREFER_VAL)
    write_json(root / "multi3drefer" / "multi3drefer_val.json", MULTI_VAL)
    write_label_map(tmp_path / "labels.tsv")
    sources = QaSources(root / "scanqa", root / "sqa_task", root / "scanrefer", root / "multi3drefer")
    return prep, sources, tmp_path / "labels.tsv"


def _by_id(prep):
    return {s.sample_id: s for s in read_samples(prep / "samples.parquet")}


def test_all_benchmarks_convert_with_exact_prompts(bench):
    prep, sources, labels = bench
    report = prep_qa(prep, sources, label_map=labels)
    assert report.n_problems == 0
    rows = _by_id(prep)
    assert pq.read_schema(prep / "samples.parquet").equals(SAMPLES_SCHEMA)
    # ScanQA: train one row per answer, val the first answer plus all answers
    prompt = f"<image> {Q1} Answer the question simply."
    assert [rows[f"scanqa/train/train-scene0000-0/{k}"].conversations for k in (0, 1)] == [
        [("human", prompt), ("gpt", "brown cabinet with tv sitting in it")], [("human", prompt), ("gpt", "cabinet")]]
    val = rows["scanqa/val/val-scene0001-3"]
    assert val.conversations[1] == ("gpt", "black chair") and val.answers == ["black chair", "chair"]
    assert val.object_ids == [0, 1] and val.question_type is None and val.box_input is None
    # SQA3D train: alternatives then the situation; question type from the first word
    tail = " Which direction should I go? Answer the question using a single word or phrase."
    assert [rows[f"sqa3d/train/7/{k}"].prompt for k in range(3)] == [
        "<image> I just sat down." + tail, "<image> I rest on a seat." + tail, "<image> I am sitting on the chair." + tail]
    assert rows["sqa3d/train/7/0"].question_type == "which" and rows["sqa3d/train/7/0"].answers == ["right"]
    assert rows["sqa3d/train/8/0"].question_type == "is" and rows["sqa3d/train/9/0"].question_type == "others"
    # the original's prefix rule on the left-stripped question
    assert [question_type(q) for q in ("  What is it?", "Isn't it red?", "However, where?", "CAN I sit?", "Why?")] \
        == ["what", "is", "how", "can", "others"]
    # ScanRefer: capitalised description, "<ground>", object id
    first = rows["scanrefer/train/0"]
    assert first.conversations == [("human", "<image>Identify the object according to the following description.\n"
                                    "This is a chair. it is near the tv."), ("gpt", "<ground>")]
    assert first.object_ids == [0] and first.answers == ["<ground>"]
    # Multi3DRefer: id lists, possibly empty, and the five types
    zt = rows["multi3drefer/val/0"]
    assert zt.prompt == ("<image>Identify the object according to the following description.\nThe red sofa.\n"
                         "There may be no corresponding object, or there may be one or more objects.")
    assert zt.object_ids == [] and zt.question_type == "zt_w_d"
    assert rows["multi3drefer/val/2"].object_ids == [0, 1] and rows["multi3drefer/val/2"].question_type == "mt"
    assert dict(report.rows) == {("scanqa", "train"): 2, ("scanqa", "val"): 1, ("sqa3d", "train"): 5,
                                 ("scanrefer", "train"): 7, ("scanrefer", "val"): 3, ("scan2cap", "train"): 7,
                                 ("scan2cap", "val"): 2, ("multi3drefer", "val"): 3}
    assert len(rows) == sum(report.rows.values())


def test_scanrefer_unique_multiple_per_scene_without_rewriting_input(bench):
    prep, sources, labels = bench
    path = sources.scanrefer / "ScanRefer_filtered_train.json"
    before = path.read_bytes()
    prep_qa(prep, QaSources(scanrefer=sources.scanrefer), label_map=labels)
    assert path.read_bytes() == before
    types = [s.question_type for s in read_samples(prep / "samples.parquet", tasks=["scanrefer"], splits=["train"])]
    # two chairs in scene0000 -> multiple; table unique; toaster oven (40) and pillow (18) both fold into 39 ->
    # multiple; scene0001's chair is unique in its scene; "kitchen_cabinets" reads as "kitchen cabinets" (3)
    assert types == ["multiple", "multiple", "unique", "multiple", "multiple", "unique", "unique"]


def test_refer_description_capitalized_like_python_str_capitalize(bench):
    prep, sources, labels = bench
    prep_qa(prep, QaSources(multi3drefer=sources.multi3drefer, scanrefer=sources.scanrefer), label_map=labels)
    rows = _by_id(prep)
    assert rows["scanrefer/val/1"].prompt.endswith("\nA grey chair by the tv.")
    assert "\nA chair right of the other chair.\n" in rows["multi3drefer/val/1"].prompt


def test_scan2cap_train_gt_boxes_and_val_grouping(bench):
    prep, sources, labels = bench
    prep_qa(prep, QaSources(scanrefer=sources.scanrefer), label_map=labels)
    rows = _by_id(prep)
    train = rows["scan2cap/train/0"]
    assert train.conversations == [
        ("human", "<image> Given an object located at <coord> , describe the object in detail."),
        ("gpt", "This is a chair. it is near the tv.")]  # str.capitalize, as the original
    np.testing.assert_array_equal(train.box_input, np.float32(box_of("scene0000_00", 0)))
    grouped = rows["scan2cap/val/0"]  # one row per object, id = its first description's index
    assert grouped.answers == ["this is a chair.", "a grey chair by the TV."]
    # only one chair of scene0000 is annotated in the val file: unique over the split, whatever train holds
    assert grouped.conversations[1] == ("gpt", "This is a chair.") and grouped.question_type == "unique"
    np.testing.assert_array_equal(grouped.box_input, np.float32(box_of("scene0000_00", 0)))
    assert rows["scan2cap/val/2"].answers == ["it is a table."] and "scan2cap/val/1" not in rows


def test_scan2cap_val_boxes_from_proposals_first_50_iou_half(bench, tmp_path):
    prep, sources, labels = bench
    far = [[50.0, 50.0, 50.0, 1.0, 1.0, 1.0]] * 50
    proposals = {
        # object 0 (centre 0, size 2): a shift of 0.5 gives IoU 6/10 = 0.6 -> matched
        "scannet/scene0000_00": [[0.5, 0.0, 0.0, 2.0, 2.0, 2.0]] + far,
        # the table (0,5,0 / 2,2,1): the exact box sits at index 50, past the first 50 -> unmatched
    }
    proposals["scannet/scene0000_00"] = proposals["scannet/scene0000_00"][:50] + [[0.0, 5.0, 0.0, 2.0, 2.0, 1.0]]
    write_json(tmp_path / "pred_box.json", proposals)
    report = prep_qa(prep, QaSources(scanrefer=sources.scanrefer), label_map=labels,
                     proposals=tmp_path / "pred_box.json")
    rows = _by_id(prep)
    np.testing.assert_array_equal(rows["scan2cap/val/0"].box_input, [0.5, 0, 0, 2, 2, 2])
    assert rows["scan2cap/val/2"].box_input is None
    assert report.unmatched["val"] == 1
    assert rows["scan2cap/train/0"].box_input is not None  # train keeps GT boxes


def test_shifted_proposal_below_half_iou_is_unmatched(bench, tmp_path):
    prep, sources, labels = bench
    # a 2 m cube shifted by 1 m: IoU = 4 / 12 = 1/3 < 0.5
    write_json(tmp_path / "p.json", {"scannet/scene0000_00": [[1.0, 0.0, 0.0, 2.0, 2.0, 2.0]]})
    prep_qa(prep, QaSources(scanrefer=sources.scanrefer), label_map=labels, proposals=tmp_path / "p.json")
    assert _by_id(prep)["scan2cap/val/0"].box_input is None


def test_sqa3d_folder_holding_files_directly_and_absent_split_note(bench):
    prep, sources, _ = bench
    report = prep_qa(prep, QaSources(sqa3d=sources.sqa3d / "balanced", scanqa=sources.scanqa))
    assert report.rows[("sqa3d", "train")] == 5
    assert sum("SQA3D val" in n for n in report.notes) == 1 and sum("SQA3D test" in n for n in report.notes) == 1
    assert not any("ScanQA" in n for n in report.notes)


def test_folder_without_any_split_file_is_an_error(bench, tmp_path):
    prep, _, _ = bench
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no ScanQA files"):
        prep_qa(prep, QaSources(scanqa=tmp_path / "empty"))


def test_scanrefer_needs_label_map(bench):
    prep, sources, _ = bench
    with pytest.raises(ConfigError, match="--label-map"):
        prep_qa(prep, QaSources(scanrefer=sources.scanrefer))


def test_schema_round_trip_and_duplicate_ids(tmp_path):
    s = Sample("scan2cap/val/x", "val", "scan2cap", "scene0000_00", [("human", "p"), ("gpt", "a")], ["a", "b"],
               [3], [0.25, 1.0, 2.0, 0.5, 0.5, 0.5], "unique")
    t = Sample("scanqa/val/y", "val", "scanqa", "scene0000_00", [("human", "q"), ("gpt", "b")], ["b"])
    assert write_samples(tmp_path / "s.parquet", [s, t]) == 2
    assert read_samples(tmp_path / "s.parquet") == [s, t]
    assert read_samples(tmp_path / "s.parquet", tasks=["scanqa"]) == [t]
    with pytest.raises(InputError, match="duplicate sample_id"):
        write_samples(tmp_path / "d.parquet", [t, t])
