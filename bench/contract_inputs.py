"""Synthetic inputs at the 7B contract's sizes for the GPU benchmarks: scenes prepared with 32 frames and cached
with 1152-wide features from a one-layer SigLIP-shaped tower and the tiny FLUX-shaped VAE (random weights)."""

from __future__ import annotations

from pathlib import Path


def contract_prep(root: Path) -> Path:
    """ROOT/prep: two synthetic scenes of 64 frames prepared with 32 frames, and their benchmark samples (needs
    open3d, like `ross3d prep scannet`)."""
    from ross3d.prep.options import PrepOptions
    from ross3d.prep.qa.run import QaSources, prep_qa
    from ross3d.prep.run import prep_scannet
    from ross3d.synth.scenes import generate_synthetic_dataset

    synth, prep = root / "synth", root / "prep"
    generate_synthetic_dataset(synth, n_scenes=2, n_frames=64, seed=0)
    assert not prep_scannet(synth / "scans", prep, PrepOptions(frame_stride=2, num_frames=32)).failed
    bench = synth / "benchmarks"
    prep_qa(prep, QaSources(bench / "scanqa", bench / "sqa_task", bench / "scanrefer", bench / "multi3drefer"),
            label_map=synth / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    return prep


def contract_cache(prep: Path, root: Path, device: str = "cuda") -> Path:
    """ROOT/cache of PREP's uniform frames, encoded on DEVICE."""
    from ross3d.cache import tiny
    from ross3d.cache.run import CacheOptions, cache_latents

    siglip = tiny.save_tiny_siglip(root / "siglip", hidden_size=1152, num_layers=1)
    report = cache_latents(prep, root / "cache", tiny.save_tiny_vae(root / "vae"), siglip,
                           CacheOptions(strategies=("uniform",), device=device, batch_size=32, workers=4))
    assert not report.failed, report.failed
    return root / "cache"
