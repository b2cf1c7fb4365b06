"""`ross3d eval run` end to end on synthetic scenes: prep -> prep qa -> cache -> a tiny model -> answers in the
original format for all five benchmarks, metrics and baselines; re-scoring the answer files gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ross3d_cli.app import app

BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")


@pytest.fixture(scope="module")
def evaluated(synth_root, tmp_path_factory):
    from ross3d.cache import tiny
    from ross3d.cache.run import CacheOptions, cache_latents
    from ross3d.model.checkpoint import save_model
    from ross3d.prep.options import PrepOptions
    from ross3d.prep.qa.run import QaSources, prep_qa
    from ross3d.prep.run import prep_scannet
    from ross3d.train.config import TrainConfig
    from ross3d.train.model_setup import build_model

    root = tmp_path_factory.mktemp("eval")
    prep, cache, bench = root / "prep", root / "cache", synth_root / "benchmarks"
    assert prep_scannet(synth_root / "scans", prep, PrepOptions(frame_stride=5, num_frames=4, bev_size=432)).failed == {}
    prep_qa(prep, QaSources(bench / "scanqa", bench / "sqa_task", bench / "scanrefer", bench / "multi3drefer"),
            label_map=synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    report = cache_latents(prep, cache, tiny.save_tiny_vae(root / "vae"), tiny.save_tiny_siglip(root / "siglip"),
                           CacheOptions(strategies=("uniform",), device="cpu", batch_size=8, workers=1))
    assert not report.failed
    config = TrainConfig()
    config.data.prep_dir, config.data.cache_dir = str(prep), str(cache)
    model, tokenizer = build_model(config, root / "tokenizer")
    checkpoint = save_model(model, root / "model", tokenizer)
    out = root / "results"
    result = CliRunner().invoke(app, ["eval", "run", "--checkpoint", str(checkpoint), "--cache", str(cache),
                                      "--samples", str(prep / "samples.parquet"), "--out", str(out), "--limit", "4",
                                      "--max-new-tokens", "4", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    return out, prep, result.output


def test_answer_files_in_the_original_format(evaluated):
    out, _, output = evaluated
    for bench in BENCHMARKS:
        lines = [json.loads(x) for x in (out / bench / "answers.jsonl").read_text().splitlines()]
        assert len(lines) == 4, bench
        assert {"dataset", "video", "sample_id", "prompt", "pred_response", "gt_response", "model_id",
                "question_type"} <= set(lines[0]) or bench == "multi3drefer"
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


@pytest.mark.parametrize("bench", ["sqa3d", "scanrefer", "multi3drefer"])
def test_rescoring_the_answer_file_reproduces_the_metrics(evaluated, bench, tmp_path):
    out, prep, _ = evaluated
    target = tmp_path / "METRICS.json"
    result = CliRunner().invoke(app, ["eval", "score", bench, str(out / bench / "answers.jsonl"),
                                      "--samples", str(prep / "samples.parquet"), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == json.loads((out / bench / "METRICS.json").read_text())
