"""Benchmark metrics against hand-computed values and against pycocoevalcap on the same strings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from typer.testing import CliRunner

from ross3d.boxes import pairwise_iou
from ross3d.eval.grounding_metrics import multi3drefer_metrics, scanrefer_metrics, select_boxes, set_f1
from ross3d.eval.scoring import score
from ross3d.eval.text_metrics import clean_answer, refined_match, scan2cap_format, scan2cap_metrics, sqa3d_metrics


def _line(sample_id, pred, gt, qtype=None, **extra):
    return {"sample_id": sample_id, "pred_response": pred, "gt_response": gt, "question_type": qtype, **extra}


def test_scanqa_em_is_raw_string_and_caption_metrics_equal_pycocoevalcap():
    lines = [_line("a", "brown", "brown"), _line("b", "Brown.", "brown"), _line("c", "two chairs", "two"),
             _line("d", "a red chair.", "red chair"), _line("e", "the lamp..", "lamp"), _line("f", "sofa .", "sofa")]
    refs = {"a": {"answers": ["brown", "dark brown"]}, "b": {"answers": ["brown"]},
            "c": {"answers": ["two", "2"]}, "d": {"answers": ["red chair", "chair"]}, "e": {"answers": ["lamp"]},
            "f": {"answers": ["sofa"]}}
    metrics = score("scanqa", lines, refs)
    assert metrics["EM"] == pytest.approx(100 / 6)  # only "brown" matches exactly; "Brown." does not
    gts = {"0": ["brown", "dark brown"], "1": ["brown"], "2": ["two", "2"], "3": ["red chair", "chair"],
           "4": ["lamp"], "5": ["sofa"]}
    # the predictions as the original's evaluator hands them to pycocoevalcap (docs/original-data.md A.1), written
    # out by hand: every trailing full stop goes, nothing else (case, inner spaces and the space before "." stay)
    res = {"0": ["brown"], "1": ["Brown"], "2": ["two chairs"], "3": ["a red chair"], "4": ["the lamp"],
           "5": ["sofa "]}
    assert metrics["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0] * 100)
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    assert [metrics[f"BLEU-{n}"] for n in range(1, 5)] == pytest.approx([b * 100 for b in bleu])
    assert metrics["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0] * 100)
    assert metrics["METEOR"] == pytest.approx(Meteor().compute_score(gts, res)[0] * 100)
    assert metrics["n"] == 6


@pytest.mark.parametrize("raw, cleaned", [
    ("The TV.", "TV"), ("  Two   chairs ", "two chairs"), ("2", "two"), ("none", "zero"), ("23", "twenty-three"),
    ("letf", "left"), ("Rigth!", "right"), ("walk backwards", "walk backward"), ("chair3", "chair"),
    ("an apple", "apple"), ("o' clock", "o'clock"), ("behine the door", "behind door"),
    # exactly the original's sequential rules: "a a chair" loses only the first article (non-overlapping matches),
    # an article before digits or before two spaces stays, only spaces (not tabs) are stripped, "let" -> "left"
    ("a a chair", "a chair"), ("a 25", "a 25"), ("the ! chair", "the  chair"), ("yes\t", "yes\t"),
    ("let", "left"), ("1:30", "one:30"), ("Table 3", "table three"), ("none of them", "zero of them"),
    ("It's 12 o'clock.", "it's twelve o'clock"), ("mat2", "mat"), ("café", "caf"),
])
def test_sqa3d_answer_cleaning(raw, cleaned):
    assert clean_answer(raw) == cleaned


def test_sqa3d_em_per_type_and_refined():
    lines = [_line("1", "Left.", "left", "which"), _line("2", "chair", "wooden chair", "what"),
             _line("3", "two", "2", "how"), _line("4", "yes", "no", "is")]
    m = sqa3d_metrics(lines)
    assert m["EM"] == pytest.approx(50.0) and m["EM-R"] == pytest.approx(75.0)
    assert (m["which/EM"], m["what/EM"], m["how/EM"], m["is/EM"]) == (100.0, 0.0, 100.0, 0.0)
    assert refined_match("", "anything")  # the original's edge case: the empty string is contained everywhere
    assert refined_match("yes\t", "y es") and not refined_match("no", "yes")  # all whitespace is dropped


def test_scan2cap_formatting_and_unmatched_policies():
    assert scan2cap_format("This is a chair, it is red.") == "sos this is a chair ,  it is red .  eos"
    lines = [{"pred_response": "a red chair.", "gt_response": ["A red chair.", "the chair is red."],
              "box_input": [0, 0, 0, 1, 1, 1]},
             {"pred_response": "a blue bed.", "gt_response": ["a blue bed."], "box_input": None}]
    original = scan2cap_metrics(lines, "original")
    gts = {"0": [scan2cap_format(r) for r in lines[0]["gt_response"]], "1": [scan2cap_format("a blue bed.")]}
    res = {"0": [scan2cap_format("a red chair.")], "1": [scan2cap_format("a blue bed.")]}
    cider, items = Cider().compute_score(gts, res)
    assert original["CIDEr"] == pytest.approx(cider * 100) and original["matched"] == 1
    standard = scan2cap_metrics(lines, "m@0.5")
    assert standard["CIDEr@0.5"] == pytest.approx(items[0] * 100 / 2)  # the unmatched object scores zero


def test_box_iou_and_scanrefer_accuracy():
    gt = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    third = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # overlap 0.5 of a unit cube -> IoU 0.5 / 1.5
    assert pairwise_iou(third, gt)[0, 0] == pytest.approx(1 / 3)
    assert pairwise_iou([0, 0, 0, 0, 1, 1], gt)[0, 0] == pytest.approx(0.0)  # degenerate box
    lines = [_line("a", gt, gt, "unique"), _line("b", third, gt, "multiple"),
             _line("c", [5, 5, 5, 1, 1, 1], gt, "multiple"), _line("d", [0.2, 0, 0, 1, 1, 1], gt, "unique")]
    m = scanrefer_metrics(lines)
    # IoUs: 1, 1/3, 0, 0.8/1.2 = 0.667
    assert m["all/Acc@0.25"] == pytest.approx(75.0) and m["all/Acc@0.5"] == pytest.approx(50.0)
    assert m["unique/Acc@0.5"] == pytest.approx(100.0) and m["multiple/Acc@0.25"] == pytest.approx(50.0)
    assert m["multiple/Acc@0.5"] == pytest.approx(0.0)


def test_multi3drefer_selection_rules():
    boxes = np.array([[0, 0, 0, 1, 1, 1], [3, 0, 0, 1, 1, 1], [6, 0, 0, 1, 1, 1]], float)
    assert len(select_boxes(np.array([0.1, 0.2, 0.0, 0.9]), boxes)) == 0  # zero target wins -> empty set
    # softmax(s/0.07): one dominant box -> exactly that one
    picked = select_boxes(np.array([0.9, 0.1, 0.0, 0.2]), boxes)
    np.testing.assert_array_equal(picked, boxes[:1])
    # near-equal scores -> boxes are added until the cumulative probability reaches 0.4
    s = np.array([0.50, 0.49, 0.48, 0.30])
    p = np.exp(s / 0.07) / np.exp(s / 0.07).sum()
    need = int(np.searchsorted(np.cumsum(np.sort(p[:-1])[::-1]), 0.4) + 1)
    assert len(select_boxes(s, boxes)) == need == 2


def test_set_f1_edge_cases():
    a, b = np.array([[0, 0, 0, 1, 1, 1]], float), np.array([[3, 0, 0, 1, 1, 1]], float)
    assert set_f1(np.zeros((0, 6)), np.zeros((0, 6))) == {0.25: 1.0, 0.5: 1.0}
    assert set_f1(a, np.zeros((0, 6))) == {0.25: 0.0, 0.5: 0.0}
    assert set_f1(np.zeros((0, 6)), a) == {0.25: 0.0, 0.5: 0.0}
    # three predictions, one GT matched perfectly: F1 = 2 * 1 / (3 + 1)
    preds = np.concatenate([b, a, b + [0, 3, 0, 0, 0, 0]])
    assert set_f1(preds, a) == {0.25: 0.5, 0.5: 0.5}
    # Hungarian assignment, not greedy: both GT boxes matched although pred 0 overlaps both
    gts = np.array([[0, 0, 0, 2, 1, 1], [1.2, 0, 0, 1, 1, 1]], float)
    preds = np.array([[0.5, 0, 0, 2, 1, 1], [1.3, 0, 0, 1, 1, 1]], float)
    assert set_f1(preds, gts)[0.25] == 1.0
    # exactly half-overlapping unit cubes: IoU = 0.5 / (1 + 7.5e-9) is below 0.5 in float64 (ScanRefer misses) but
    # rounds to 0.5 in the float32 matrix of the Multi3DRefer evaluator (a hit), as in the original
    shifted = np.array([[1 / 3, 0, 0, 1, 1, 1]])
    assert pairwise_iou(shifted, a)[0, 0] < 0.5 and np.float32(pairwise_iou(shifted, a)[0, 0]) == 0.5
    assert set_f1(shifted, a)[0.5] == 1.0
    assert scanrefer_metrics([_line("x", shifted[0].tolist(), a[0].tolist(), "unique")])["all/Acc@0.5"] == 0.0


def test_multi3drefer_metrics_per_type():
    box = [0, 0, 0, 1, 1, 1]
    lines = [
        {"sample_id": "z", "question_type": "zt_wo_d", "scores": [0.1, 0.9], "objects": [box], "gt_response": []},
        {"sample_id": "s", "question_type": "st_w_d", "scores": [0.9, 0.1], "objects": [box], "gt_response": [box]},
        {"sample_id": "m", "question_type": "mt", "scores": [0.1, 0.9], "objects": [box], "gt_response": [box]},
    ]
    m = multi3drefer_metrics(lines)
    assert m["zt_wo_d/F1@0.25"] == 100.0 and m["st_w_d/F1@0.5"] == 100.0 and m["mt/F1@0.5"] == 0.0
    assert m["all/F1@0.5"] == pytest.approx(200 / 3)


def test_score_an_original_answers_file_through_the_cli(tmp_path):
    from ross3d_cli.app import app

    gt = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    answers = tmp_path / "scanrefer.jsonl"
    rows = [{"dataset": "scanrefer", "video": "scannet/scene0011_00", "sample_id": k, "prompt": "<image>Identify",
             "pred_response": pred, "gt_response": gt, "model_id": "ross3d", "question_type": qt}
            for k, (pred, qt) in enumerate([(gt, "unique"), ([0.5, 0, 0, 1, 1, 1], "multiple")])]
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "METRICS.json"
    result = CliRunner().invoke(app, ["eval", "score", "scanrefer", str(answers), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["all/Acc@0.25"] == 100.0 and metrics["all/Acc@0.5"] == 50.0 and metrics["n"] == 2
    assert out.with_suffix(".csv").read_text().splitlines()[0].startswith("n,")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    result = CliRunner().invoke(app, ["eval", "score", "scanrefer", str(bad), "--out", str(out)])
    assert result.exit_code == 1 and "bad.jsonl: line 1 is not JSON" in result.output
    # well-formed JSON that the benchmark cannot score: one line naming the file, the line and the problem
    for bench, row, problem in [
        ("scanrefer", {**rows[0], "pred_response": [1, 2, 3]}, "scanrefer answer line 2 has boxes that are not"),
        ("multi3drefer", {**rows[0], "scores": [0.1], "objects": [gt]}, "multi3drefer answer line 2 has 1 scores"),
        ("multi3drefer", rows[0], "multi3drefer answer line 2 lacks scores, objects"),
        ("scan2cap", rows[0], "scan2cap answer line 2 needs a text pred_response and a list of caption"),
    ]:
        good = {"scanrefer": rows[1], "multi3drefer": {**rows[1], "scores": [0.1, 0.2], "objects": [gt]},
                "scan2cap": {**rows[1], "pred_response": "a chair.", "gt_response": ["a chair."]}}[bench]
        broken = tmp_path / f"{bench}.jsonl"
        broken.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
        result = CliRunner().invoke(app, ["eval", "score", bench, str(broken), "--out", str(out)])
        assert result.exit_code == 1 and f"{bench}.jsonl: {problem}" in result.output, result.output


def test_meteor_without_java_names_what_is_missing(monkeypatch):
    from ross3d.errors import Ross3DError
    from ross3d.eval import text_metrics

    text_metrics._meteor.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Ross3DError, match="METEOR needs a Java runtime.*default-jre-headless"):
        text_metrics.caption_scores({"0": ["a"]}, {"0": ["a"]})
    text_metrics._meteor.cache_clear()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _original_line(dataset, k, pred, gt, qtype=None, **extra):
    return {"dataset": dataset, "video": "scannet/scene0000_00", "sample_id": k, "prompt": "<image> q",
            "pred_response": pred, "gt_response": gt, "model_id": "ross3d-7b", "question_type": qtype, **extra}


def _score_cli(*args):
    from ross3d_cli.app import app

    return CliRunner().invoke(app, ["eval", "score", *map(str, args)])


def test_scanqa_with_the_original_question_file_through_the_cli(tmp_path):
    questions = tmp_path / "scanqa_val_llava_style.json"
    questions.write_text(json.dumps([
        {"id": "val-scene0000-0_0", "conversations": [{"from": "human", "value": "<image> What?"},
                                                      {"from": "gpt", "value": "brown"}],
         "metadata": {"answers": ["brown", "dark brown"]}},
        {"id": "val-scene0000-1_0", "conversations": [{"from": "human", "value": "<image> Where?"},
                                                      {"from": "gpt", "value": "on the table"}],
         "metadata": {"answers": ["on the table", "on table"]}}]))
    answers = _write_jsonl(tmp_path / "scanqa.jsonl", [
        _original_line("scanqa", "val-scene0000-0", "dark brown", "brown"),
        _original_line("scanqa", "val-scene0000-1", "on table.", "on the table")])
    out = tmp_path / "scanqa" / "METRICS.json"
    result = _score_cli("scanqa", answers, "--questions", questions, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    # "dark brown" is the second reference (full list from the question file); "on table." is not raw-equal
    assert metrics["EM"] == 50.0 and metrics["n"] == 2
    gts = {"0": ["brown", "dark brown"], "1": ["on the table", "on table"]}
    res = {"0": ["dark brown"], "1": ["on table"]}
    assert metrics["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0] * 100, abs=1e-4)
    assert metrics["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0] * 100, abs=1e-4)
    assert set(metrics) == {"n", "EM", "CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L"}
    header, values = out.with_suffix(".csv").read_text().splitlines()
    assert header.split(",") == list(metrics) and float(values.split(",")[header.split(",").index("EM")]) == 50.0
    # an answer whose id is not in the question file is bad input, named in one line
    result = _score_cli("scanqa", answers, "--questions", questions, "--samples", questions, "--out", out)
    assert result.exit_code == 1 and "give one of them" in result.output
    stray = _write_jsonl(tmp_path / "stray.jsonl", [_original_line("scanqa", "val-scene0999-0", "x", "y")])
    result = _score_cli("scanqa", stray, "--questions", questions, "--out", out)
    assert result.exit_code == 1 and "val-scene0999-0" in result.output and "no reference" in result.output


def test_sqa3d_original_file_through_the_cli(tmp_path):
    answers = _write_jsonl(tmp_path / "sqa3d.jsonl", [
        _original_line("sqa3d", "1", "Two.", "2", "how"), _original_line("sqa3d", "2", "the left", "left", "which"),
        _original_line("sqa3d", "3", "kitchen sink", "sink", "what"), _original_line("sqa3d", "4", "no", "yes", "is")])
    out = tmp_path / "METRICS.json"
    assert _score_cli("sqa3d", answers, "--out", out).exit_code == 0
    metrics = json.loads(out.read_text())
    assert metrics == {"EM": 50.0, "EM-R": 75.0, "n": 4, "what/EM": 0.0, "is/EM": 0.0, "how/EM": 100.0,
                       "which/EM": 100.0}


def test_scan2cap_unmatched_needs_box_input_and_uses_the_question_file(tmp_path):
    rows = [_original_line("scan2cap", "scene0000_00|3|0", "a red chair.", ["A red chair.", "the red chair."],
                           scene="scene0000_00"),
            _original_line("scan2cap", "scene0000_00|5|0", "a red chair.", ["a wooden door."], scene="scene0000_00")]
    answers = _write_jsonl(tmp_path / "scan2cap.jsonl", rows)
    out = tmp_path / "METRICS.json"
    result = _score_cli("scan2cap", answers, "--scan2cap-unmatched", "m@0.5", "--out", out)
    assert result.exit_code == 1 and "m@0.5 needs each object's box_input" in result.output
    questions = tmp_path / "scan2cap_val_llava_style.json"
    questions.write_text(json.dumps([
        {"id": "scene0000_00|3|0", "box_input": [0, 0, 0, 1, 1, 1], "annotations": ["A red chair."],
         "conversations": [{"from": "human", "value": "<image> ..."}, {"from": "gpt", "value": "A red chair."}]},
        {"id": "scene0000_00|5|0", "box_input": None, "annotations": ["a wooden door."],
         "conversations": [{"from": "human", "value": "<image> ..."}, {"from": "gpt", "value": "a wooden door."}]}]))
    result = _score_cli("scan2cap", answers, "--questions", questions, "--scan2cap-unmatched", "m@0.5", "--out", out)
    assert result.exit_code == 0, result.output
    standard = json.loads(out.read_text())
    gts = {"0": [scan2cap_format(r) for r in rows[0]["gt_response"]], "1": [scan2cap_format("a wooden door.")]}
    res = {"0": [scan2cap_format("a red chair.")], "1": [scan2cap_format("a red chair.")]}
    cider, items = Cider().compute_score(gts, res)
    # the answers' own gt_response lists are the references; the unmatched object (box_input null) scores zero
    assert standard["CIDEr@0.5"] == pytest.approx(items[0] * 100 / 2, abs=1e-4) and standard["matched"] == 1
    assert _score_cli("scan2cap", answers, "--out", out).exit_code == 0
    assert json.loads(out.read_text())["CIDEr"] == pytest.approx(cider * 100, abs=1e-4)


def test_grounding_gt_boxes_come_from_objects_parquet_with_samples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ross3d.prep.qa.schema import Sample, write_samples

    def sample(k, task, ids, qtype):
        return Sample(sample_id=k, split="val", task=task, scene_id="scene0000_00",
                      conversations=[("human", "<image>Identify"), ("gpt", "<ground>")], answers=["<ground>"],
                      object_ids=ids, question_type=qtype)

    write_samples(tmp_path / "samples.parquet", [sample("r0", "scanrefer", [1], "unique"),
                                                 sample("r1", "scanrefer", [2], "multiple"),
                                                 sample("m0", "multi3drefer", [1, 2], "mt")])
    boxes = {1: [0, 0, 0, 1, 1, 1], 2: [3, 0, 0, 1, 1, 1]}
    pq.write_table(pa.table({"scene_id": ["scene0000_00"] * 2, "object_id": pa.array([1, 2], pa.int32()),
                             "label": ["chair", "chair"], "box": pa.array(list(boxes.values()),
                                                                           pa.list_(pa.float32(), 6))}),
                   tmp_path / "objects.parquet")
    # the answers' gt_response is wrong on purpose: with --samples the GT comes from objects.parquet
    far = [9, 9, 9, 1, 1, 1]
    answers = _write_jsonl(tmp_path / "scanrefer.jsonl", [
        _original_line("scanrefer", "r0", boxes[1], far), _original_line("scanrefer", "r1", boxes[1], far)])
    out = tmp_path / "METRICS.json"
    result = _score_cli("scanrefer", answers, "--samples", tmp_path / "samples.parquet", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == {"n": 2, "unique/Acc@0.25": 100.0, "unique/Acc@0.5": 100.0,
                                           "multiple/Acc@0.25": 0.0, "multiple/Acc@0.5": 0.0,
                                           "all/Acc@0.25": 50.0, "all/Acc@0.5": 50.0}
    # Multi3DRefer: two proposals with equal scores, the zero target far below: the first alone has p = 0.5 >= 0.4,
    # so one box is predicted for the two GT boxes (from objects.parquet): F1 = 2 * 1 / (1 + 2)
    answers = _write_jsonl(tmp_path / "multi3drefer.jsonl", [
        {**_original_line("multi3drefer", "m0", None, [far]), "scores": [0.5, 0.5, -1.0],
         "objects": [boxes[1], boxes[2]]}])
    assert _score_cli("multi3drefer", answers, "--samples", tmp_path / "samples.parquet", "--out", out).exit_code == 0
    metrics = json.loads(out.read_text())
    assert metrics["mt/F1@0.5"] == pytest.approx(200 / 3, abs=1e-4) and metrics["all/F1@0.25"] == metrics["mt/F1@0.5"]
    assert _score_cli("multi3drefer", answers, "--out", out).exit_code == 0  # the line's own (far) GT box
    assert json.loads(out.read_text())["all/F1@0.25"] == 0.0


@pytest.mark.timeout(120)
def test_a_failing_jvm_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    from ross3d.errors import Ross3DError
    from ross3d.eval import text_metrics

    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: Could not reserve enough space for object heap' >&2\nexit 1\n")
    fake.chmod(0o755)
    text_metrics._meteor.cache_clear()
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(Ross3DError, match="METEOR's Java process failed"):
        text_metrics.caption_scores({"0": ["a red chair"]}, {"0": ["a chair"]})
    text_metrics._meteor.cache_clear()


def test_unreadable_answer_files_are_one_line_errors(tmp_path):
    from ross3d.errors import InputError
    from ross3d.eval.scoring import read_answers

    binary = tmp_path / "answers.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="answers.jsonl: not a UTF-8 text file"):
        read_answers(binary)
    with pytest.raises(InputError, match="cannot read answers file"):
        read_answers(tmp_path)


def test_malformed_and_duplicated_answer_lines_are_one_line_errors(tmp_path):
    out = tmp_path / "METRICS.json"
    good = _original_line("sqa3d", "q0", "yes", "yes")
    for name, rows, problem in [
        ("number", [5], "sqa3d answer line 1 is not a JSON object"),
        ("list_id", [{**good, "sample_id": [1]}], "sqa3d answer line 1 has a sample_id that is not a string"),
        ("dict_id", [good, {**good, "sample_id": {"a": 1}}], "sqa3d answer line 2 has a sample_id that is not"),
        ("dup", [good, _original_line("sqa3d", "q1", "no", "no"), good],
         "sqa3d answer line 3 repeats sample_id 'q0' of line 1"),
    ]:
        answers = _write_jsonl(tmp_path / f"{name}.jsonl", rows)
        result = _score_cli("sqa3d", answers, "--out", out)
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and f"{name}.jsonl: {problem}" in text, result.output
        assert "Traceback" not in result.output


def test_score_refuses_a_partial_file_and_reports_coverage(tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([
        {"id": f"q{k}", "conversations": [{"from": "human", "value": "<image> Q?"}, {"from": "gpt", "value": "yes"}],
         "metadata": {"answers": ["yes"]}} for k in range(3)]))
    answers = _write_jsonl(tmp_path / "a.jsonl", [_original_line("sqa3d", "q0", "yes", "yes"),
                                                  _original_line("sqa3d", "q2", "no", "yes")])
    refused = _score_cli("sqa3d", answers, "--questions", questions, "--out", tmp_path / "M.json")
    assert refused.exit_code == 1 and not (tmp_path / "M.json").exists()
    assert " ".join(refused.output.split()) == (f"error: {answers}: answers 2 of the 3 sqa3d samples of the references; "
                                                "missing 'q1' (--partial scores it anyway)")
    result = _score_cli("sqa3d", answers, "--questions", questions, "--out", tmp_path / "M.json", "--partial")
    assert result.exit_code == 0, result.output
    assert "coverage: 2 of 3 sqa3d samples answered (partial answers file)" in " ".join(result.output.split())


def test_eval_run_refuses_an_unknown_benchmark(tmp_path):
    from ross3d_cli.app import app

    result = CliRunner().invoke(app, ["eval", "run", "--benchmark", "bogus", "--checkpoint", str(tmp_path),
                                      "--cache", str(tmp_path), "--samples", str(tmp_path / "s.parquet"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2  # a usage error: --benchmark is a choice
    # one line naming the option and the choices; typer >= 0.2x words it "Value error, 'bogus' ...", the floor without
    head, _, tail = result.output.strip().partition(": Invalid value for '--benchmark': ")
    assert head == "error: ross3d eval run" and "\n" not in tail and tail.endswith(
        "'bogus' is not one of 'all', 'scanqa', 'sqa3d', 'scan2cap', 'scanrefer', 'multi3drefer'.")
    assert not (tmp_path / "out").exists()
