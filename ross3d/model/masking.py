"""View masking for cross-view reconstruction: which samples mask views, and which frames they mask.

A masking sample hides `n_masked = V - int(V * (1 - ratio))` frames (8 of 32), the ones with the largest uniform
noise (MAE-style argsort, as the original). Two schedules decide which samples mask:
- `step` (default, the original's behaviour): every sample of optimizer step k masks iff `k % int(1/ratio) == 0`;
- `sample`: each sample masks independently with probability `ratio` (Bernoulli).
Grounding samples never mask.
"""

from __future__ import annotations

import torch

from ross3d.model.config import Ross3DConfig


def masking_samples(config: Ross3DConfig, eligible: torch.Tensor, global_step: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) bool: which samples mask views this call. `eligible` (B,) bool excludes e.g. grounding samples."""
    if config.mask_ratio <= 0:
        return torch.zeros_like(eligible)
    if config.mask_schedule == "step":
        on = global_step % int(1 / config.mask_ratio) == 0
        return eligible & on
    draws = torch.rand(eligible.shape, generator=generator, device=generator.device if generator else "cpu")
    return eligible & (draws.to(eligible.device) < config.mask_ratio)


def draw_view_mask(config: Ross3DConfig, masking: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) bool view mask, True = masked; rows of non-masking samples are all False."""
    batch, views = masking.shape[0], config.n_frames
    noise = torch.rand(batch, views, generator=generator, device=generator.device if generator else "cpu")
    order = noise.argsort(dim=1)
    mask = torch.zeros(batch, views, dtype=torch.bool, device=order.device)
    mask.scatter_(1, order[:, views - config.n_masked:], True)
    return mask.to(masking.device) & masking[:, None]
