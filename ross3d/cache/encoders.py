"""The frozen encoders of stage 2, loaded from local folders: the FLUX VAE (diffusers AutoencoderKL; posterior
mean and logvar) and the SigLIP vision tower (transformers; the output of the full tower's last layer but one,
without the post layernorm, as the original). Each encodes a whole batch in one call, optionally under autocast.

The tower folder is either `convert-checkpoint`'s DST/vision_tower (the tower stored in the LMM checkpoint, its last
layer already deleted; config.json says how many layers to run in `ross3d_layers_used`) or a plain SigLIP folder,
whose last layer is skipped. Both give the same features for the same weights."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ross3d.cache.fingerprint import saved_config, weights_digest
from ross3d.errors import ConfigError, InputError


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | None) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; None picks cuda when available."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"--device must be cpu or cuda, got {device!r}")
    return torch.device(device)


def _autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def _check_dir(model_dir: Path, what: str) -> Path:
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, f"not a {what} folder (no config.json)")
    return model_dir


class VaeEncoder:
    """diffusers AutoencoderKL encoder half: (N, 3, H, W) in [-1, 1] -> posterior mean and logvar (float32)."""

    def __init__(self, model_dir: str | Path, device: torch.device, dtype: str = "fp32"):
        from diffusers import AutoencoderKL

        self.dir = _check_dir(Path(model_dir), "diffusers AutoencoderKL")
        try:
            vae = AutoencoderKL.from_pretrained(self.dir)
        except (OSError, ValueError, TypeError) as err:
            raise InputError(self.dir, f"cannot load AutoencoderKL: {err}") from None
        self.device, self.dtype = device, dtype
        # channels_last: faster convolutions on GPU and with oneDNN on CPU (same results within fp32 rounding)
        self.vae = vae.float().eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
        config = self.vae.config
        self.shift_factor = float(config.shift_factor or 0.0)
        self.scaling_factor = float(config.scaling_factor)
        self.latent_channels = int(config.latent_channels)
        self.downsample = 2 ** (len(config.block_out_channels) - 1)

    def fingerprint(self) -> dict:
        return {"class": "diffusers.AutoencoderKL", "config": saved_config(self.dir),
                "weights_sha256": weights_digest(self.dir), "compute_dtype": self.dtype}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward for the whole batch; returns (mean, logvar) as float32 on the CPU."""
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with _autocast(self.device, self.dtype):
            dist = self.vae.encode(x).latent_dist
        return dist.mean.float().cpu(), dist.logvar.float().cpu()


class VisionEncoder:
    """SiglipVisionModel up to the full tower's last layer but one, no post layernorm: (N, 3, 384, 384) ->
    (N, tokens, width)."""

    def __init__(self, model_dir: str | Path, device: torch.device, dtype: str = "fp32"):
        from transformers import SiglipVisionModel

        from ross3d.model.vision_tower import LAYERS_USED_KEY

        self.dir = _check_dir(Path(model_dir), "transformers SiglipVisionModel")
        try:
            model = SiglipVisionModel.from_pretrained(self.dir)
        except (OSError, ValueError, TypeError) as err:
            raise InputError(self.dir, f"cannot load SiglipVisionModel: {err}") from None
        self.device, self.dtype = device, dtype
        self.model = model.float().eval().requires_grad_(False).to(device)
        self.tower = getattr(self.model, "vision_model", self.model)  # transformers 4 nests it, 5 does not
        config = self.model.config
        stored = len(self.tower.encoder.layers)
        used = getattr(config, LAYERS_USED_KEY, None)
        used = stored - 1 if used is None else int(used)
        if not 0 <= used <= stored:
            raise InputError(self.dir / "config.json", f"{LAYERS_USED_KEY} = {used}, but the tower has {stored} layers")
        self.layers = self.tower.encoder.layers[:used]
        self.image_size, self.width = int(config.image_size), int(config.hidden_size)
        self.tokens = (config.image_size // config.patch_size) ** 2

    def fingerprint(self) -> dict:
        return {"class": "transformers.SiglipVisionModel", "config": saved_config(self.dir),
                "weights_sha256": weights_digest(self.dir), "compute_dtype": self.dtype,
                "layers_used": len(self.layers), "post_layernorm": False,
                "attention": str(self.model.config._attn_implementation)}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """One forward for the whole batch; returns float32 features on the CPU."""
        x = x.to(self.device, non_blocking=True)
        with _autocast(self.device, self.dtype):
            h = self.tower.embeddings(x)
            for layer in self.layers:
                h = layer(h, None)
                h = h[0] if isinstance(h, tuple) else h  # transformers 4 layers return tuples
        return h.float().cpu()
