"""`ross3d eval run` end to end on synthetic scenes: prep -> prep qa -> cache -> a tiny model -> answers in the
original format for all five benchmarks, metrics and baselines; re-scoring the answer files gives the same numbers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ross3d_cli.app import app

BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")


@pytest.fixture(scope="module")
def evaluated(eval_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "results"
    result = CliRunner().invoke(app, ["eval", "run", "--checkpoint", str(eval_inputs["checkpoint"]),
                                      "--cache", str(eval_inputs["cache"]),
                                      "--samples", str(eval_inputs["prep"] / "samples.parquet"), "--out", str(out),
                                      "--limit", "4", "--max-new-tokens", "4", "--batch-size", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out, eval_inputs["prep"], result.output


def test_answer_files_in_the_original_format(evaluated):
    out, _, output = evaluated
    for bench in BENCHMARKS:
        lines = [json.loads(x) for x in (out / bench / "answers.jsonl").read_text().splitlines()]
        assert len(lines) == 4, bench
        # Multi3DRefer lines hold the candidates' scores instead of one predicted box (scored by eval score)
        answer_keys = {"scores", "objects"} if bench == "multi3drefer" else {"pred_response"}
        for line in lines:
            assert {"dataset", "video", "sample_id", "prompt", "gt_response", "model_id", "question_type",
                    *answer_keys} <= set(line), (bench, sorted(line))
        assert all(line["video"].startswith("scannet/scene") for line in lines)
    refer = [json.loads(x) for x in (out / "scanrefer" / "answers.jsonl").read_text().splitlines()]
    assert all(len(line["pred_response"]) == 6 and len(line["gt_response"]) == 6 for line in refer)
    multi = [json.loads(x) for x in (out / "multi3drefer" / "answers.jsonl").read_text().splitlines()]
    assert all(len(line["scores"]) == len(line["objects"]) + 1 for line in multi)
    caps = [json.loads(x) for x in (out / "scan2cap" / "answers.jsonl").read_text().splitlines()]
    assert all(isinstance(line["gt_response"], list) and line["scene"] for line in caps)
    assert "baseline" in output and "scanrefer" in output


def test_metrics_and_baselines_have_the_documented_keys(evaluated):
    out, _, _ = evaluated
    keys = {"scanqa": ["EM", "CIDEr", "BLEU-4", "METEOR", "ROUGE-L"], "sqa3d": ["EM", "EM-R"],
            "scan2cap": ["CIDEr", "BLEU-4", "METEOR", "ROUGE-L"], "scanrefer": ["all/Acc@0.25", "all/Acc@0.5"],
            "multi3drefer": ["all/F1@0.25", "all/F1@0.5"]}
    for bench, expected in keys.items():
        for name in ("METRICS.json", "BASELINE.json"):
            metrics = json.loads((out / bench / name).read_text())
            upper = {"CIDEr": 1000.0}  # CIDEr-D is x10 before the x100 percentage scale
            assert metrics["n"] == 4, (bench, name)
            assert all(0.0 <= metrics[k] <= upper.get(k, 100.0) for k in expected), (bench, name, metrics)
        assert (out / bench / "METRICS.csv").is_file()


def _iou_by_hand(a: list[float], b: list[float]) -> float:
    """Axis-aligned IoU of two (cx, cy, cz, dx, dy, dz) boxes, overlap per axis (docs/original-data.md A.4)."""
    inter = 1.0
    for axis in range(3):
        lo = max(a[axis] - a[axis + 3] / 2, b[axis] - b[axis + 3] / 2)
        hi = min(a[axis] + a[axis + 3] / 2, b[axis] + b[axis + 3] / 2)
        inter *= max(hi - lo, 0.0)
    return inter / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter + 1e-8)


def test_scanrefer_metrics_are_the_answer_files_accuracy(evaluated):
    """METRICS.json of ScanRefer is the share of answer lines whose box reaches the IoU threshold, recomputed here
    from the answer file with an IoU written out per axis."""
    out, _, _ = evaluated
    lines = [json.loads(x) for x in (out / "scanrefer" / "answers.jsonl").read_text().splitlines()]
    ious = [_iou_by_hand(line["pred_response"], line["gt_response"]) for line in lines]
    metrics = json.loads((out / "scanrefer" / "METRICS.json").read_text())
    for t in (0.25, 0.5):
        assert metrics[f"all/Acc@{t}"] == pytest.approx(100 * sum(i >= t for i in ious) / len(ious))


@pytest.mark.parametrize("bench", ["sqa3d", "scanrefer", "multi3drefer"])
def test_rescoring_the_answer_file_reproduces_the_metrics(evaluated, bench, tmp_path):
    out, prep, _ = evaluated
    target = tmp_path / "METRICS.json"
    result = CliRunner().invoke(app, ["eval", "score", bench, str(out / bench / "answers.jsonl"),
                                      "--samples", str(prep / "samples.parquet"), "--out", str(target), "--partial"])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == json.loads((out / bench / "METRICS.json").read_text())
