"""Model and tokenizer for a run: from a ross3d model folder (`model.init`) or fresh from a size preset, with the
sizes the cache dictates. Sizes that are data choices, not weight shapes (frames per sample, SigLIP patch grid, VAE
shift/scale), follow the cache, also for a checkpoint converted with another preset's frame count
(`ross3d.cache.model_sizes.fit_to_cache`, used by eval and visualize too); weight shapes (feature width, latent channels, BEV latent grid)
must match it. The original freezes only the vision tower and the VAE, which are not part of
this model, so by default every parameter trains: projector, LLM, denoiser, grounding heads, image_newline and
mask_token (`model.train_parts` and `model.lora` narrow it: ross3d.train.parts, ross3d.train.lora).

`<ground>`/`<coord>` are added when the tokenizer lacks them (a converted LLaVA-Video folder that predates them, a
fresh tokenizer), with their rows at the mean of the existing rows as the original's training script; the
export keeps them in its tokenizer and config. A fresh run trains a local BPE tokenizer on the samples' texts; it
is saved into the run directory, so a resumed run and the export use exactly the same ids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ross3d.cache.model_sizes import cache_sizes, fit_to_cache
from ross3d.errors import ConfigError
from ross3d.train.config import TrainConfig

log = logging.getLogger(__name__)


def _training_texts(config: TrainConfig) -> list[str]:
    """The texts of the training split, without the unlabelled scenes' (`data.labelled_fraction`)."""
    from ross3d.prep.qa.schema import read_samples
    from ross3d.train.labelled import labelled_split

    rows = read_samples(Path(config.data.prep_dir) / "samples.parquet", splits=[config.data.split])
    split = labelled_split(rows, config.data)
    if split is not None:
        labelled = set(split.labelled)
        rows = [r for r in rows if r.scene_id in labelled]
    return [text.replace("<image>", " ") for row in rows for _, text in row.conversations]


def _preset_overrides(items: list[str]) -> dict:
    """`field=value` strings (values as YAML scalars) checked against the Ross3DConfig fields."""
    import yaml

    from ross3d.model.config import Ross3DConfig

    fields = set(Ross3DConfig.field_names())
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
    from ross3d.model.config import preset
    from ross3d.model.ross3d import Ross3D
    from ross3d.model.tokenizer import build_tokenizer, load_tokenizer
    from ross3d.model.tokens import ADDED_TOKENS, add_model_tokens
    from ross3d.train.engine import use_bf16
    from ross3d.train.zero import gathered_for_update

    sizes = cache_sizes(config.data.cache_dir, config.data.strategy)
    options = {"mask_ratio": config.model.mask_ratio, "mask_schedule": config.model.mask_schedule}
    if config.model.init:
        from ross3d.model.checkpoint import load_model

        # bf16 runs keep the stored dtypes (DeepSpeed casts); fp32 runs need one dtype (a release is bf16, the
        # parts it lacks are fp32)
        model, report = load_model(config.model.init, dtype=None if use_bf16(config) else torch.float32)
        log.info("model from %s: %s", config.model.init, report.summary())
        fitted = fit_to_cache(model.config, sizes, f"model.init: {config.model.init}")
        model.config = fitted.replace(**options, extra=_extra(model.config, config))
        tokenizer = load_tokenizer(config.model.init)
        missing = [tok for tok in ADDED_TOKENS if tok not in tokenizer.get_vocab()]
        ids = add_model_tokens(model, tokenizer, gathered_for_update)
        if missing and is_main:
            log.info("model.init has no %s: added as ids %s, mean-initialised", " ".join(missing),
                     [ids[tok] for tok in missing])
        return model, tokenizer
    torch.manual_seed(config.seed)
    if reuse_tokenizer:
        tokenizer = load_tokenizer(tokenizer_dir)
    else:
        tokenizer = build_tokenizer(_training_texts(config), config.model.tokenizer_vocab)
    model_config = preset(config.model.preset, **{**_preset_overrides(config.model.overrides), **sizes, **options})
    if len(tokenizer) + 2 > model_config.vocab_size:
        raise ConfigError(f"model.tokenizer_vocab: {len(tokenizer)} + 2 added tokens exceed the "
                          f"{model_config.vocab_size}-row vocabulary of preset {config.model.preset!r}")
    model = Ross3D(model_config)
    add_model_tokens(model, tokenizer, gathered_for_update)
    model.config = model.config.replace(extra=_extra(model.config, config))
    if is_main:
        tokenizer.save_pretrained(str(tokenizer_dir))
    return model, tokenizer
