"""Inputs of the `ross3d eval run` tests, built once per session: the synthetic scenes through `prep scannet`,
`prep qa` and `cache-latents` (tiny random encoders), and a tiny model with random weights saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path


def build_eval_inputs(synth_root: Path, root: Path) -> dict[str, Path]:
    """{"prep", "cache", "checkpoint"} under root."""
    from ross3d.cache import tiny
    from ross3d.cache.run import CacheOptions, cache_latents
    from ross3d.model.checkpoint import save_model
    from ross3d.prep.options import PrepOptions
    from ross3d.prep.qa.run import QaSources, prep_qa
    from ross3d.prep.run import prep_scannet
    from ross3d.train.config import TrainConfig
    from ross3d.train.model_setup import build_model

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
    return {"prep": prep, "cache": cache, "checkpoint": save_model(model, root / "model", tokenizer)}
