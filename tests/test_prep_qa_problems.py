"""Bad input in `prep qa`: missing fields, unknown scenes/objects, unparsable records are counted per file and
kind with their first ids; nothing is written without --keep-going, and the CLI exits non-zero."""

from __future__ import annotations

import pytest
from qa_helpers import write_json, write_label_map, write_objects
from typer.testing import CliRunner

from ross3d.errors import InputError
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.qa.schema import read_samples
from ross3d_cli.app import app

GOOD = {"answers": ["a"], "object_ids": [], "question": "Q?", "scene_id": "scene0000_00"}
SCANQA_BAD = [
    {**GOOD, "question_id": "train-scene0000-0"},
    {**GOOD, "question_id": "train-scene0999-0", "scene_id": "scene0999_00"},  # unknown scene
    {"answers": ["a"], "object_ids": [], "question_id": "train-scene0000-1", "scene_id": "scene0000_00"},
    "not a record",
    {**GOOD, "question_id": "train-scene0000-2", "answers": []},
    {**GOOD, "question_id": "train-scene0998-0", "scene_id": "scene0998_00"},  # unknown scene
]
REFER_BAD = [
    {"scene_id": "scene0000_00", "object_id": "0", "object_name": "chair", "description": "ok."},
    {"scene_id": "scene0000_00", "object_id": "99", "object_name": "chair", "description": "no such object."},
    {"scene_id": "scene0000_00", "object_id": "4", "object_name": "pillow", "description": "no vertices."},
    {"scene_id": "scene0000_00", "object_id": "x", "object_name": "chair", "description": "bad id."},
]
MULTI_BAD = [
    {"scene_id": "scene0000_00", "object_ids": [0], "description": "d.", "eval_type": "st_w_d"},
    {"scene_id": "scene0000_00", "object_ids": [0], "description": "d.", "eval_type": "st"},
    {"scene_id": "scene0000_00", "object_ids": ["0"], "description": "d.", "eval_type": "mt"},
]
SQA_Q = {"questions": [
    {"scene_id": "scene0000_00", "situation": "S.", "alternative_situation": [], "question": "Q?", "question_id": 1},
    {"scene_id": "scene0000_00", "situation": "S.", "alternative_situation": [], "question": "Q?", "question_id": 2},
]}
SQA_A = {"annotations": [{"scene_id": "scene0000_00", "question_id": 1, "answers": [{"answer": "a"}]},
                         {"scene_id": "scene0000_00", "question_id": 3, "answers": [{}]}]}


@pytest.fixture
def bad(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    write_json(tmp_path / "scanqa" / "ScanQA_v1.0_train.json", SCANQA_BAD)
    write_json(tmp_path / "scanrefer" / "ScanRefer_filtered_val.json", REFER_BAD)
    write_json(tmp_path / "m3d" / "multi3drefer_val.json", MULTI_BAD)
    write_json(tmp_path / "sqa" / "v1_balanced_questions_val_scannetv2.json", SQA_Q)
    write_json(tmp_path / "sqa" / "v1_balanced_sqa_annotations_val_scannetv2.json", SQA_A)
    write_label_map(tmp_path / "labels.tsv")
    return prep, QaSources(tmp_path / "scanqa", tmp_path / "sqa", tmp_path / "scanrefer", tmp_path / "m3d"), \
        tmp_path / "labels.tsv"


def test_problems_are_counted_with_first_ids_and_nothing_written(bad):
    prep, sources, labels = bad
    report = prep_qa(prep, sources, label_map=labels)
    problems = {k: (p.count, p.first_ids) for k, p in report.problems.items()}
    assert problems == {
        ("ScanQA_v1.0_train.json", "unknown scene"): (2, ["train-scene0999-0", "train-scene0998-0"]),
        ("ScanQA_v1.0_train.json", "missing field 'question'"): (1, ["train-scene0000-1"]),
        ("ScanQA_v1.0_train.json", "record is not a JSON object"): (1, ["#3"]),
        ("ScanQA_v1.0_train.json", "field 'answers' is empty"): (1, ["train-scene0000-2"]),
        ("v1_balanced_sqa_annotations_val_scannetv2.json", "missing field 'answer'"): (1, ["3"]),
        ("v1_balanced_questions_val_scannetv2.json", "question without annotation"): (1, ["2"]),
        ("ScanRefer_filtered_val.json", "unknown object"): (1, ["#1"]),
        ("ScanRefer_filtered_val.json", "object has no vertices (NaN box)"): (1, ["#2"]),
        ("ScanRefer_filtered_val.json", "field 'object_id' is not an integer"): (1, ["#3"]),
        ("multi3drefer_val.json", "unknown eval_type"): (1, ["#1"]),
        ("multi3drefer_val.json", "field 'object_ids' holds a wrong-typed item"): (1, ["#2"]),
    }
    assert report.n_problems == 12 and report.samples_path is None
    assert not (prep / "samples.parquet").exists()


def test_keep_going_writes_the_good_rows(bad):
    prep, sources, labels = bad
    report = prep_qa(prep, sources, label_map=labels, keep_going=True)
    ids = [s.sample_id for s in read_samples(prep / "samples.parquet")]
    assert ids == ["scanqa/train/train-scene0000-0/0", "sqa3d/val/1", "scanrefer/val/0",
                   "scan2cap/val/0", "multi3drefer/val/0"]
    assert report.n_problems == 12


def test_first_ids_are_capped_at_five(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    records = [{**GOOD, "question_id": f"q{i}", "scene_id": "scene0500_00"} for i in range(8)]
    write_json(tmp_path / "qa" / "ScanQA_v1.0_val.json", records)
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "qa"))
    (entry,) = report.problems.values()
    assert entry.count == 8 and entry.first_ids == ["q0", "q1", "q2", "q3", "q4"]


def test_unparsable_file_is_a_one_line_error(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "ScanQA_v1.0_train.json").write_text("[{", encoding="utf-8")
    with pytest.raises(InputError, match="ScanQA_v1.0_train.json: not valid JSON"):
        prep_qa(prep, QaSources(scanqa=tmp_path / "qa"))


def test_cli_exit_codes_table_and_summary(bad):
    prep, sources, labels = bad
    args = ["prep", "qa", str(prep), "--scanqa", str(sources.scanqa), "--multi3drefer", str(sources.multi3drefer)]
    failed = CliRunner().invoke(app, args)
    text = " ".join(failed.output.split())  # rich wraps long lines
    assert failed.exit_code == 1
    assert "2 x unknown scene (first: train-scene0999-0, train-scene0998-0)" in text
    assert "note: ScanQA val: ScanQA_v1.0_val.json not found" in text and "nothing written" in text
    kept = CliRunner().invoke(app, [*args, "--keep-going"])
    assert kept.exit_code == 0, kept.output
    kept_text = " ".join(kept.output.split())
    assert "│ scanqa │ train │ 1 │" in kept_text and "│ multi3drefer │ val │ 1 │" in kept_text
    assert "wrote" in kept_text
    assert len(read_samples(prep / "samples.parquet")) == 2


def test_cli_missing_prep_dir_is_one_line_error(tmp_path, bad):
    _, sources, _ = bad
    result = CliRunner().invoke(app, ["prep", "qa", str(tmp_path / "nope"), "--scanqa", str(sources.scanqa)])
    assert result.exit_code == 1 and "run `ross3d prep scannet` first" in result.output


def test_scene_status_from_scenes_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    prep = tmp_path / "prep"
    write_objects(prep)  # objects of scene0000_00 and scene0001_00
    pq.write_table(pa.table({"scene_id": ["scene0000_00", "scene0001_00", "scene0002_00"],
                             "status": ["ok", "failed", "ok"]}), prep / "scenes.parquet")
    records = [{**GOOD, "question_id": f"q{k}", "scene_id": f"scene000{k}_00"} for k in range(3)]
    write_json(tmp_path / "qa" / "ScanQA_v1.0_val.json", records)
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "qa"), keep_going=True)
    assert {k[1]: p.first_ids for k, p in report.problems.items()} == {"scene failed in prep scannet": ["q1"]}
    # scene0002_00 has no objects but prepared fine: its question is kept
    assert [s.scene_id for s in read_samples(prep / "samples.parquet")] == ["scene0000_00", "scene0002_00"]


def test_out_of_range_ids_duplicates_and_long_texts_are_bad_records(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    records = [{**GOOD, "question_id": "q0"},
               {**GOOD, "question_id": "q0", "answers": ["b"]},  # the same question id again
               {**GOOD, "question_id": "q1", "object_ids": [2 ** 40]},
               {**GOOD, "question_id": "q2", "question": "x" * 10_000_000},
               {**GOOD, "question_id": "q3", "question": "y" * 10_000}]  # at the cap: kept
    write_json(tmp_path / "qa" / "ScanQA_v1.0_val.json", records)
    write_json(tmp_path / "refer" / "ScanRefer_filtered_val.json", [
        {"scene_id": "scene0000_00", "object_id": str(2 ** 40), "object_name": "chair", "description": "d."}])
    write_label_map(tmp_path / "labels.tsv")
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "qa", scanrefer=tmp_path / "refer"),
                     label_map=tmp_path / "labels.tsv", keep_going=True)
    problems = {k: p.first_ids for k, p in report.problems.items()}
    assert problems == {
        ("ScanQA_v1.0_val.json", "duplicate question id"): ["q0"],
        ("ScanQA_v1.0_val.json", "field 'object_ids' is out of the int32 range"): ["q1"],
        ("ScanQA_v1.0_val.json", "field 'question' is longer than 10000 characters"): ["q2"],
        ("ScanRefer_filtered_val.json", "field 'object_id' is out of the int32 range"): ["#0"],
    }
    rows = read_samples(prep / "samples.parquet")
    assert [(s.sample_id, s.answers) for s in rows] == [("scanqa/val/q0", ["a"]), ("scanqa/val/q3", ["a"])]


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    prep = tmp_path / "prep"
    write_objects(prep)
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "ScanQA_v1.0_val.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    result = CliRunner().invoke(app, ["prep", "qa", str(prep), "--scanqa", str(tmp_path / "qa")])
    assert result.exit_code == 1 and "ScanQA_v1.0_val.json: JSON nested too deeply" in " ".join(result.output.split())
    assert "Traceback" not in result.output
