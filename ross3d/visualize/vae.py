"""The VAE decoder for reconstruction pictures: only the VAE a cache was built with decodes its latents.

CACHE_DIR/manifest.json records the VAE's class, config and weights digest (not its folder), so the user points
at the folder and it is checked against that fingerprint before any decoding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ross3d.errors import InputError

CHECKED_KEYS = ("class", "config", "weights_sha256")


def check_vae(vae_dir: str | Path, cache_dir: str | Path) -> None:
    """Raise InputError naming what differs when vae_dir is not the VAE recorded in CACHE_DIR/manifest.json."""
    from ross3d.cache.fingerprint import differences, saved_config, weights_digest
    from ross3d.cache.index import read_manifest

    vae_dir = Path(vae_dir)
    if not (vae_dir / "config.json").is_file():
        raise InputError(vae_dir, "not a diffusers AutoencoderKL folder (no config.json)")
    recorded = {k: read_manifest(Path(cache_dir))["fingerprints"]["vae"].get(k) for k in CHECKED_KEYS}
    found = {"class": "diffusers.AutoencoderKL", "config": saved_config(vae_dir),
             "weights_sha256": weights_digest(vae_dir)}
    if found != recorded:
        raise InputError(vae_dir, "is not the VAE this cache was built with (cache -> this folder): "
                         + "; ".join(differences(recorded, found, limit=3)))


def load_vae(vae_dir: str | Path, device: torch.device | str = "cpu"):
    """A diffusers AutoencoderKL, fp32, in eval mode on `device` (check it with `check_vae` first)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(vae_dir)).float().eval().requires_grad_(False).to(device)
