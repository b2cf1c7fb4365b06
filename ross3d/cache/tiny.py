"""Encoders with random weights for tests, the demo and the benchmark: a FLUX-shaped tiny AutoencoderKL, a tiny
SiglipVisionModel (384 input, patch 14 -> 27x27 tokens), and the full FLUX.1-dev VAE configuration. Saved with
save_pretrained next to a README that says the weights are random."""

from __future__ import annotations

from pathlib import Path

import torch

RANDOM_README = "random weights, for tests and the demo only (built by ross3d.cache.tiny; not a trained model)\n"


def full_flux_vae_config() -> dict:
    """The FLUX.1-dev `vae/` architecture (docs/original-model.md 4.1)."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
        layers_per_block=2, norm_num_groups=32, sample_size=1024,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159,
    )


def tiny_flux_vae_config() -> dict:
    """FLUX-shaped (16 latent channels, 8x downsampling, no quant convs) but tiny."""
    return {**full_flux_vae_config(), "block_out_channels": [8, 16, 16, 16], "layers_per_block": 1,
            "norm_num_groups": 4, "sample_size": 216}


def build_vae(config: dict, seed: int = 0):
    """An AutoencoderKL with random (seeded) weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**config).eval()


def tiny_siglip_config(hidden_size: int = 32, num_layers: int = 3):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                              num_attention_heads=2, image_size=384, patch_size=14, vision_use_head=False)


def build_siglip(config, seed: int = 0):
    """A SiglipVisionModel with random (seeded) weights."""
    from transformers import SiglipVisionModel

    torch.manual_seed(seed)
    return SiglipVisionModel(config).eval()


def save_model(model, out_dir: str | Path, readme: str = RANDOM_README) -> Path:
    """save_pretrained plus the README that says what the weights are (random by default)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(readme)
    return out_dir


def save_full_flux_vae(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the full-size FLUX.1-dev VAE architecture with random weights (for benchmarks)."""
    return save_model(build_vae(full_flux_vae_config(), seed), out_dir)


def save_tiny_vae(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random FLUX-shaped VAE (diffusers format) into out_dir."""
    return save_model(build_vae(tiny_flux_vae_config(), seed), out_dir)


def save_tiny_siglip(out_dir: str | Path, seed: int = 0, hidden_size: int = 32, num_layers: int = 3) -> Path:
    """Write a tiny random SigLIP vision tower (transformers format) into out_dir."""
    return save_model(build_siglip(tiny_siglip_config(hidden_size, num_layers), seed), out_dir)
