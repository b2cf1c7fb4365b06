"""Reconstruction losses (cross-view and BEV) and sampling/decoding of reconstructions.

Conditioning (docs/original-model.md 3, 4.3): the final post-norm hidden states of the unmasked frames' visual tokens
(newlines stripped) pass the non-affine LayerNorm and the attention pooler of their kind. Targets: VAE latents of
the masked views (each repeated `view_repeat` times with its own t and noise) and of the BEV. Losses are per-sample
means; the BEV mean is mask-weighted and 0 for an empty mask. Both denoiser calls always run (a zero-weighted dummy
row when nothing is masked) so that ZeRO-3 ranks stay in lockstep.
"""

from __future__ import annotations

import torch

from ross3d.model.config import Ross3DConfig
from ross3d.model.denoiser import Denoiser
from ross3d.model.diffusion import GaussianDiffusion
from ross3d.model.latents import latent_targets, unscale_latents


def _run(denoiser: Denoiser, diffusion: GaussianDiffusion, x0: torch.Tensor, cond: torch.Tensor, kind: str,
         generator: torch.Generator | None) -> torch.Tensor:
    with torch.autocast(device_type=x0.device.type, enabled=False):
        return diffusion.loss(lambda x, t: denoiser(x, t, cond, kind), x0, generator)


def view_loss(config: Ross3DConfig, denoiser: Denoiser, diffusion: GaussianDiffusion, cond: torch.Tensor,
              view_mask: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample cross-view denoising MSE (B,): cond (B, V, Q, d) per frame, view_mask (B, V), posteriors
    (B, V, C, H, W)."""
    batch = view_mask.shape[0]
    rows = view_mask.nonzero()  # (R, 2): sample, view
    repeat = config.view_repeat or max(config.n_frames // max(config.n_masked, 1), 1)
    g, dev = config.pool_grid, cond.device
    if len(rows):
        x0 = latent_targets(mean[rows[:, 0], rows[:, 1]], logvar[rows[:, 0], rows[:, 1]], g,
                            config.latent_shift, config.latent_scale, generator).to(dev)
        owner = rows[:, 0].repeat_interleave(repeat)
        x0 = x0.repeat_interleave(repeat, dim=0)
        rows_cond = cond[rows[:, 0], rows[:, 1]].repeat_interleave(repeat, dim=0)
    else:  # lockstep: one zero-weighted dummy row
        x0 = torch.zeros(1, config.denoiser_channels, g, g, device=dev)
        owner = torch.zeros(1, dtype=torch.long, device=dev)
        rows_cond = cond[:1, 0]
    mse = _run(denoiser, diffusion, x0, rows_cond, "view", generator).flatten(1).mean(1)
    weight = torch.ones_like(mse) if len(rows) else torch.zeros_like(mse)
    sums = torch.zeros(batch, device=dev).index_add(0, owner, mse * weight)
    counts = torch.zeros(batch, device=dev).index_add(0, owner, weight)
    return sums / counts.clamp(min=1)


def bev_loss(config: Ross3DConfig, denoiser: Denoiser, diffusion: GaussianDiffusion, cond: torch.Tensor,
             mean: torch.Tensor, logvar: torch.Tensor, valid: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample masked-mean BEV denoising MSE (B,): posteriors (B, C, 2g, 2g), valid (B, g, g) bool; 0 if empty."""
    x0 = latent_targets(mean, logvar, config.bev_grid, config.latent_shift, config.latent_scale,
                        generator).to(cond.device)
    mse = _run(denoiser, diffusion, x0, cond, "bev", generator)
    w = valid.to(mse.dtype)[:, None].expand_as(mse)
    return (mse * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1)


@torch.no_grad()
def sample_latents(config: Ross3DConfig, denoiser: Denoiser, diffusion: GaussianDiffusion, cond: torch.Tensor,
                   kind: str, steps: int = 50, sampler: str = "ddim",
                   generator: torch.Generator | None = None, clip: bool = True) -> torch.Tensor:
    """Sample one reconstruction per condition row: cond (N, Q, d) -> (N, 4C, g, g) scaled latents (x0 clamped to
    [-1, 1] at every step when `clip`, as the original)."""
    g = config.pool_grid if kind == "view" else config.bev_grid
    shape = (cond.shape[0], config.denoiser_channels, g, g)
    return diffusion.sample(lambda x, t: denoiser(x, t, cond.float(), kind), shape, steps, sampler, generator,
                            cond.device, clip)


@torch.no_grad()
def decode_latents(config: Ross3DConfig, latents: torch.Tensor, vae) -> torch.Tensor:
    """Scaled latents (N, 4C, g, g) -> RGB images (N, 3, H, W) in [0, 1] through a diffusers AutoencoderKL."""
    z = unscale_latents(latents, config.latent_shift, config.latent_scale)
    param = next(vae.parameters())
    images = vae.decode(z.to(param.device, param.dtype)).sample
    return ((images.float() + 1) / 2).clamp(0, 1)
