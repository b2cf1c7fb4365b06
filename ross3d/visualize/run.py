"""`ross3d visualize` and the trainer's `visualize_every` preview: the one-sample batch of a samples.parquet row
built by the trainer's collator from the cache, the reconstructions, their numbers and the picture.

`reconstruct` runs on every rank (ZeRO-3 needs all ranks in the forward); `render` decodes and writes on one rank.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ross3d.errors import InputError
from ross3d.visualize.reconstruct import Reconstruction


def pick_sample(samples_path: str | Path, scene_id: str | None = None, sample_id: str | None = None,
                splits: list[str] | None = None):
    """The samples.parquet row named by sample_id, else the first row of scene_id (within splits, when given)."""
    from ross3d.prep.qa.schema import read_samples

    rows = read_samples(samples_path, splits=splits)
    if sample_id is not None:
        hits = [r for r in rows if r.sample_id == sample_id]
        if not hits:
            raise InputError(samples_path, f"no sample {sample_id!r}")
        if scene_id is not None and hits[0].scene_id != scene_id:
            raise InputError(samples_path, f"sample {sample_id!r} belongs to {hits[0].scene_id}, not {scene_id}")
        return hits[0]
    hits = [r for r in rows if scene_id is None or r.scene_id == scene_id]
    if not hits:
        where = f" of split {splits}" if splits else ""
        raise InputError(samples_path, f"no sample{where} for scene {scene_id!r}" if scene_id else f"no sample{where}")
    return hits[0]


def sample_batch(row, cache_dir: str | Path, strategy: str, tokenizer, image_token_id: int,
                 spatial_instruction: bool = False) -> dict:
    """The model's one-sample batch for a samples.parquet row, tokenised and collated exactly as in training."""
    from ross3d.batches import collate, encode_row
    from ross3d.cache.reader import CacheReader
    from ross3d.chat import ChatEncoder

    text = encode_row(row, ChatEncoder(tokenizer, image_token_id), spatial_instruction)
    scene = CacheReader(cache_dir).load_scene(row.scene_id, strategy)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return collate([text], [scene], pad)


def checkpoint_step(folder: str | Path) -> str:
    """The training step of a model folder: `step` in its config.json (top level or `extra`, where the trainer's
    export records it; nested under `ross3d` in the format before), a `step_<n>` folder name, else the name."""
    import json

    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        config = config.get("ross3d", config)
        step = config.get("step", config.get("extra", {}).get("step"))
    except (OSError, ValueError):
        step = None
    if step is not None:
        return str(step)
    match = re.fullmatch(r"step_(\d+)", folder.name)
    return match.group(1) if match else folder.name


def metrics_table(recs: list[Reconstruction]) -> list[dict]:
    """Per reconstruction: kind, view, MSE and cosine to the posterior mean, and the same for the baseline."""
    return [r.metrics() for r in recs]


def render(config, recs: list[Reconstruction], vae, out_png: str | Path, title: str) -> Path:
    """Decode targets, reconstructions and baselines with the VAE and write the picture."""
    from ross3d.visualize.figure import decode_images, write_figure

    return write_figure(out_png, recs, decode_images(config, recs, vae), title)


def title_of(scene_id: str, sample_id: str, step: str | int) -> str:
    return f"{scene_id}  |  sample {sample_id}  |  step {step}"


def move(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def visualize_checkpoint(checkpoint: str | Path, cache_dir: str | Path, samples_path: str | Path, scene_id: str,
                         sample_id: str | None = None, out_png: str | Path | None = None,
                         vae_dir: str | Path | None = None, mask_views: list[int] | None = None, steps: int = 50,
                         sampler: str = "ddim", seed: int = 0, strategy: str = "uniform",
                         spatial_instruction: bool = False, device: str | None = None, clip: bool = True) -> dict:
    """Reconstruct one sample of a model folder; write the picture when out_png is given (`clip=False`: sample
    without the original's x0 clamping). Returns the report: scene, sample, step, masked views, settings,
    per-reconstruction metrics and the picture's path."""
    from ross3d.cache.encoders import resolve_device
    from ross3d.model.checkpoint import load_model
    from ross3d.model.diffusion import SAMPLERS
    from ross3d.model.tokenizer import load_tokenizer
    from ross3d.cache.model_sizes import cache_sizes, fit_to_cache
    from ross3d.visualize.reconstruct import reconstruct, view_mask_for
    from ross3d.visualize.vae import check_vae, load_vae

    if sampler not in SAMPLERS:
        raise InputError("--sampler", f"{sampler!r} is not one of {SAMPLERS}")
    if steps < 1:
        raise InputError("--steps", f"must be >= 1, got {steps}")
    if out_png is not None and vae_dir is None:
        raise InputError("--vae", "the picture needs the VAE the cache was built with (the cache records only its "
                                  "fingerprint); pass --vae DIR")
    if vae_dir is not None:  # refuse a wrong VAE before the model is loaded
        check_vae(vae_dir, cache_dir)
    dev = resolve_device(device)
    model, _ = load_model(checkpoint, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    model.config = fit_to_cache(model.config, cache_sizes(cache_dir, strategy), str(checkpoint))
    model.to(dev)
    tokenizer = load_tokenizer(checkpoint)
    row = pick_sample(samples_path, scene_id, sample_id)
    batch = move(sample_batch(row, cache_dir, strategy, tokenizer, model.config.image_token_id, spatial_instruction),
                 dev)
    view_mask = view_mask_for(model.config, mask_views, seed, dev)
    recs = reconstruct(model, batch, view_mask, steps, sampler, seed, clip)
    step = checkpoint_step(checkpoint)
    report = {"scene_id": row.scene_id, "sample_id": row.sample_id, "step": step,
              "masked_views": view_mask[0].nonzero().flatten().tolist(), "steps": steps, "sampler": sampler,
              "clip": clip, "seed": seed, "reconstructions": metrics_table(recs), "picture": None}
    if out_png is not None:
        vae = load_vae(vae_dir, dev)
        report["picture"] = str(render(model.config, recs, vae, out_png, title_of(row.scene_id, row.sample_id, step)))
    return report
