"""Grounding evaluation against imported proposals: membership from the PREP geometry equals the cached GT
membership when the proposals are the GT boxes, and the runner scores against the proposals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from ross3d.cache import tiny
from ross3d.cache.reader import CacheReader
from ross3d.cache.run import CacheOptions, cache_latents
from ross3d.eval.proposals import ProposalSource
from ross3d.eval.runner import EvalOptions, Evaluator
from ross3d.model.checkpoint import save_model
from ross3d.prep.options import PrepOptions
from ross3d.prep.qa.run import QaSources, prep_qa
from ross3d.prep.run import prep_scannet
from ross3d.train.config import TrainConfig
from ross3d.train.model_setup import build_model


def test_proposal_membership_and_scoring(synth_root, tmp_path):
    prep, cache, bench = tmp_path / "prep", tmp_path / "cache", synth_root / "benchmarks"
    assert prep_scannet(synth_root / "scans", prep, PrepOptions(frame_stride=5, num_frames=4)).failed == {}
    objects = pq.read_table(prep / "objects.parquet").to_pylist()
    scenes = sorted({o["scene_id"] for o in objects})
    proposals = {f"scannet/{s}": [o["box"] for o in objects if o["scene_id"] == s and np.isfinite(o["box"]).all()]
                 for s in scenes}
    (tmp_path / "pred_box.json").write_text(json.dumps(proposals))
    prep_qa(prep, QaSources(scanrefer=bench / "scanrefer"), proposals=tmp_path / "pred_box.json",
            label_map=synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    report = cache_latents(prep, cache, tiny.save_tiny_vae(tmp_path / "vae"), tiny.save_tiny_siglip(tmp_path / "sig"),
                           CacheOptions(strategies=("uniform",), device="cpu", batch_size=8, workers=1))
    assert not report.failed

    source = ProposalSource(prep, "uniform")
    cached = CacheReader(cache).load_scene(scenes[0], "uniform")
    valid = np.isfinite(cached["objects/boxes"]).all(1)
    boxes = source.boxes(scenes[0])
    np.testing.assert_allclose(boxes, cached["objects/boxes"][valid])
    assert source.exclude_zero_depth is False  # as the PREP run (its default)
    np.testing.assert_array_equal(source.membership(scenes[0], boxes), cached["objects/membership"][valid])

    config = TrainConfig()
    config.data.prep_dir, config.data.cache_dir, config.data.tasks = str(prep), str(cache), ["scanrefer"]
    model, tokenizer = build_model(config, tmp_path / "tok")
    evaluator = Evaluator(save_model(model, tmp_path / "model", tokenizer), cache, prep, EvalOptions(limit=3))
    lines = evaluator.answers("scanrefer")
    assert len(lines) == 3 and all(line["proposals"] == "proposals" for line in lines)
    candidates = {tuple(np.round(b, 5)) for b in boxes.tolist()}
    assert all(tuple(np.round(line["pred_response"], 5)) in candidates for line in lines
               if line["video"] == f"scannet/{scenes[0]}")
