"""The trainer's `visualize_every: N` option: every N optimizer steps, reconstructions of one fixed held-out sample
written next to log.jsonl as `reconstruction_step_<n>.png` with its numbers in `reconstruction_step_<n>.json`.

Every rank runs the LMM forward and the denoiser sampling together (ZeRO-3 gathers parameters in lockstep,
docs/platform.md, the ZeRO-3 lockstep rule); only the main rank holds the VAE, decodes and writes, so the other ranks lose no more than the
reconstruction itself. The sample, its view mask and the sampling noise are fixed, so pictures compare over steps.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ross3d.errors import ConfigError

log = logging.getLogger(__name__)

PREVIEW_SAMPLER = "ddim"


def held_out_row(samples_path: Path, train_split: str, tasks: list[str], cached: set[str], sample_id: str | None):
    """`sample_id`'s row, else the first cached row of the configured tasks outside the training split."""
    from ross3d.prep.qa.schema import read_samples
    from ross3d.visualize.run import pick_sample

    if sample_id is not None:
        return pick_sample(samples_path, sample_id=sample_id)
    for row in read_samples(samples_path, tasks=tasks):
        if row.split != train_split and row.scene_id in cached:
            return row
    raise ConfigError(f"visualize_every: no held-out sample (no cached scene has {tasks} samples outside split "
                      f"{train_split!r}); name one with visualize_sample")


class TrainingPreview:
    """Built once per rank before the loop; `maybe_write(model, step)` is called by every rank after each step."""

    def __init__(self, config, model_config, tokenizer, device: torch.device, is_main: bool):
        from ross3d.cache.reader import CacheReader
        from ross3d.visualize.reconstruct import view_mask_for
        from ross3d.visualize.run import move, sample_batch
        from ross3d.visualize.vae import check_vae, load_vae

        data = config.data
        check_vae(config.visualize_vae, data.cache_dir)
        samples = Path(data.prep_dir) / "samples.parquet"
        cached = set(CacheReader(data.cache_dir).scenes(data.strategy))
        self.row = held_out_row(samples, data.split, data.tasks, cached, config.visualize_sample)
        self.batch = move(sample_batch(self.row, data.cache_dir, data.strategy, tokenizer,
                                       model_config.image_token_id, data.spatial_instruction), device)
        self.view_mask = view_mask_for(model_config, None, config.seed, device)
        self.every, self.steps, self.seed = config.visualize_every, config.visualize_steps, config.seed
        self.is_main = is_main
        self.out = Path(config.output_dir)
        self.vae = load_vae(config.visualize_vae, device) if is_main else None

    def maybe_write(self, model, step: int) -> Path | None:
        """On steps divisible by N: reconstruct on every rank; the main rank writes picture and numbers."""
        if step % self.every:
            return None
        from ross3d.visualize.reconstruct import reconstruct
        from ross3d.visualize.run import metrics_table, render, title_of

        recs = reconstruct(model, self.batch, self.view_mask, self.steps, PREVIEW_SAMPLER, self.seed)
        if not self.is_main:
            return None
        png = self.out / f"reconstruction_step_{step}.png"
        render(model.config, recs, self.vae, png, title_of(self.row.scene_id, self.row.sample_id, step))
        report = {"step": step, "scene_id": self.row.scene_id, "sample_id": self.row.sample_id,
                  "masked_views": self.view_mask[0].nonzero().flatten().tolist(),
                  "reconstructions": metrics_table(recs)}
        png.with_suffix(".json").write_text(json.dumps(report, indent=2))
        log.info("step %d: reconstruction picture %s", step, png)
        return png
