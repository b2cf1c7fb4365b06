"""Reconstruction targets from cached VAE posteriors: sample, shift/scale, 27->28 resize, 2x2 space-to-channel.

`z = mean + exp(0.5 * logvar) * eps` has the distribution of the original's `posterior.sample()`; then
`(z - shift) * scale`; views are bilinearly resized 27 -> 28 after sampling (the original's order); finally
`(C, 2h, 2w) -> (4C, h, w)` with channel order (c, p1, p2): c-major, then row offset, then column offset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One fp32 draw from the diagonal Gaussian posterior (logvar clamped to [-30, 20] like diffusers)."""
    mean, logvar = mean.float(), logvar.float().clamp(-30.0, 20.0)
    eps = torch.randn(mean.shape, generator=generator, device=generator.device if generator else "cpu")
    return mean + torch.exp(0.5 * logvar) * eps.to(mean.device)


def space_to_channel(z: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (N, C*4, h, w); output channel c*4 + p1*2 + p2 holds z[c, 2i + p1, 2j + p2]."""
    n, c, hh, ww = z.shape
    z = z.reshape(n, c, hh // 2, 2, ww // 2, 2)  # n c h p1 w p2
    return z.permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, hh // 2, ww // 2)


def channel_to_space(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `space_to_channel`."""
    n, c4, h, w = x.shape
    x = x.reshape(n, c4 // 4, 2, 2, h, w)  # n c p1 p2 h w
    return x.permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, h * 2, w * 2)


def latent_targets(mean: torch.Tensor, logvar: torch.Tensor, grid: int, shift: float, scale: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) posterior -> (N, 4C, grid, grid) denoiser targets; resized to 2*grid first when H != 2*grid."""
    z = (sample_posterior(mean, logvar, generator) - shift) * scale
    if z.shape[-1] != 2 * grid or z.shape[-2] != 2 * grid:
        z = F.interpolate(z, size=(2 * grid, 2 * grid), mode="bilinear", align_corners=False)
    return space_to_channel(z)


def unscale_latents(x: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """Denoiser output (N, 4C, h, w) -> VAE latents (N, C, 2h, 2w) ready for the VAE decoder."""
    return channel_to_space(x) / scale + shift
