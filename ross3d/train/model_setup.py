"""Model and tokenizer for a run: from a ross3d model folder (`model.init`) or fresh from a size preset, with the
sizes the cache dictates (frames, feature width, BEV latent grid, VAE shift/scale). The original freezes only the
vision tower and the VAE (docs/original-model.md 8.1), which are not part of this model, so every parameter trains:
projector, LLM, denoiser, grounding heads, image_newline and mask_token.

A fresh run trains a local BPE tokenizer on the samples' texts and adds `<ground>`/`<coord>`; the tokenizer is
saved into the run directory, so a resumed run and the export use exactly the same ids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ross3d.errors import ConfigError, InputError
from ross3d.train.config import TrainConfig

log = logging.getLogger(__name__)

def cache_sizes(cache_dir: str | Path, strategy: str) -> dict:
    """Model config fields fixed by the cache: frames per sample, SigLIP width, BEV latent grid, VAE factors."""
    from ross3d.cache.reader import CacheReader

    reader = CacheReader(cache_dir)
    if not reader.has_vision:
        raise InputError(Path(cache_dir) / "manifest.json", "cache has no vision features (run cache-latents "
                                                           "with --vision-tower)")
    scenes = reader.scenes(strategy)
    if not scenes:
        raise InputError(Path(cache_dir) / "index.parquet", f"no scene cached with strategy {strategy!r}")
    arrays = reader.load_scene(scenes[0], strategy)
    n_frames, n_patches, width = arrays["frames/vision"].shape
    channels, _, bev_grid = arrays["bev/vae_mean"].shape
    return {"n_frames": int(n_frames), "patch_grid": int(round(n_patches ** 0.5)), "vision_dim": int(width),
            "bev_latent_grid": int(bev_grid), "latent_channels": int(channels),
            "latent_shift": reader.shift_factor, "latent_scale": reader.scaling_factor}


def _training_texts(config: TrainConfig) -> list[str]:
    from ross3d.prep.qa.schema import read_samples

    rows = read_samples(Path(config.data.prep_dir) / "samples.parquet", splits=[config.data.split])
    return [text.replace("<image>", " ") for row in rows for _, text in row.conversations]


def _preset_overrides(items: list[str]) -> dict:
    """`field=value` strings (values as YAML scalars) checked against the Ross3DConfig fields."""
    import dataclasses

    import yaml

    from ross3d.model.config import Ross3DConfig

    fields = {f.name for f in dataclasses.fields(Ross3DConfig)}
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key.strip() not in fields:
            raise ConfigError(f"model.overrides: {item!r} is not `field=value` with a model config field")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _extra(model_config, config: TrainConfig) -> dict:
    """Training choices the exported config keeps, so evaluation prompts the model the way it was trained."""
    return {**model_config.extra, "spatial_instruction": config.data.spatial_instruction}


def build_model(config: TrainConfig, tokenizer_dir: Path, is_main: bool = True, reuse_tokenizer: bool = False):
    """(model, tokenizer) for the run; a fresh tokenizer is written to tokenizer_dir (by the main rank), or read
    from it with `reuse_tokenizer` (resume)."""
    from transformers import PreTrainedTokenizerFast

    from ross3d.model.config import preset
    from ross3d.model.ross3d import Ross3D
    from ross3d.model.tokens import add_tokens

    sizes = cache_sizes(config.data.cache_dir, config.data.strategy)
    options = {"mask_ratio": config.model.mask_ratio, "mask_schedule": config.model.mask_schedule}
    if config.model.init:
        from ross3d.model.checkpoint import load_model

        model, report = load_model(config.model.init)
        log.info("model from %s: %s", config.model.init, report.summary())
        wrong = {k: (getattr(model.config, k), v) for k, v in sizes.items()
                 if k not in ("latent_shift", "latent_scale") and getattr(model.config, k) != v}
        if wrong:
            raise ConfigError(f"model.init: {config.model.init} does not fit the cache (model, cache): {wrong}")
        model.config = model.config.replace(**options, latent_shift=sizes["latent_shift"],
                                            latent_scale=sizes["latent_scale"], extra=_extra(model.config, config))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(config.model.init)
        return model, tokenizer
    torch.manual_seed(config.seed)
    if reuse_tokenizer:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    else:
        from ross3d.model.tokenizer import build_tokenizer

        tokenizer = build_tokenizer(_training_texts(config), config.model.tokenizer_vocab)
    model_config = preset(config.model.preset, **{**_preset_overrides(config.model.overrides), **sizes, **options})
    if len(tokenizer) + 2 > model_config.vocab_size:
        raise ConfigError(f"model.tokenizer_vocab: {len(tokenizer)} + 2 added tokens exceed the "
                          f"{model_config.vocab_size}-row vocabulary of preset {config.model.preset!r}")
    model = Ross3D(model_config)
    ids = add_tokens(tokenizer, model.llm)
    model.config = model.config.replace(ground_token_id=ids["<ground>"], coord_token_id=ids["<coord>"],
                                        extra=_extra(model.config, config))
    if is_main:
        tokenizer.save_pretrained(str(tokenizer_dir))
    return model, tokenizer
