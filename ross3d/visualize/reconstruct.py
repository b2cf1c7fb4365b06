"""Reconstructions of one sample: the LMM runs with a chosen view mask, the denoiser is sampled from noise for every
masked view and for the BEV (conditioned on the pooled hidden states exactly as in training), and each sample is
compared with its target in the denoiser's latent space.

Targets are the cached posterior *means* brought into the denoiser's space the way training brings its posterior
samples: `(mean - shift) * scale`, the views resized 27 -> 28, then the 2x2 space-to-channel grouping. The baseline
is the same sampling with the pooled condition replaced by zeros and the same starting noise, so a user sees
whether conditioning helps. BEV errors are taken over the cells of the BEV loss mask only (the loss ignores the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ross3d.errors import InputError
from ross3d.model.config import Ross3DConfig
from ross3d.model.latents import space_to_channel
from ross3d.model.masking import draw_view_mask


@dataclass
class Reconstruction:
    """One reconstructed latent, its target and the unconditioned baseline, all (4C, g, g) scaled latents."""

    kind: str  # "view" or "bev"
    view: int | None  # frame index of a masked view; None for the BEV
    target: torch.Tensor
    sample: torch.Tensor
    baseline: torch.Tensor
    cells: torch.Tensor | None = None  # (g, g) bool: where the error is measured (the BEV loss mask)

    @property
    def name(self) -> str:
        return "bev" if self.kind == "bev" else f"view {self.view}"

    def metrics(self) -> dict:
        mse, cos = latent_error(self.sample, self.target, self.cells)
        base_mse, base_cos = latent_error(self.baseline, self.target, self.cells)
        return {"kind": self.kind, "view": self.view, "mse": mse, "cosine": cos,
                "baseline_mse": base_mse, "baseline_cosine": base_cos}


def mean_targets(config: Ross3DConfig, mean: torch.Tensor, grid: int) -> torch.Tensor:
    """Posterior means (N, C, H, W) -> (N, 4C, grid, grid) in the denoiser's scaled, grouped latent space."""
    z = (mean.float() - config.latent_shift) * config.latent_scale
    if z.shape[-2:] != (2 * grid, 2 * grid):
        z = F.interpolate(z, size=(2 * grid, 2 * grid), mode="bilinear", align_corners=False)
    return space_to_channel(z)


def latent_error(x: torch.Tensor, target: torch.Tensor, cells: torch.Tensor | None = None) -> tuple[float, float]:
    """(MSE, cosine similarity) between two (C, g, g) latents, over the given (g, g) cells or all of them."""
    x, target = x.float(), target.float().to(x.device)
    if cells is not None:
        keep = cells.to(x.device).bool()
        if not keep.any():
            return float("nan"), float("nan")
        x, target = x[:, keep], target[:, keep]
    x, target = x.flatten(), target.flatten()
    return float(((x - target) ** 2).mean()), float(F.cosine_similarity(x, target, dim=0))


def view_mask_for(config: Ross3DConfig, views: list[int] | None, seed: int, device: torch.device) -> torch.Tensor:
    """(1, V) bool mask: the given frame indices, or the paper's masking (n_masked random frames) drawn from seed."""
    if views is None:
        generator = torch.Generator().manual_seed(seed)
        return draw_view_mask(config, torch.ones(1, dtype=torch.bool), generator).to(device)
    bad = [v for v in views if not 0 <= v < config.n_frames]
    if bad or len(set(views)) >= config.n_frames:
        raise InputError("--mask-views", f"{views} must be distinct frame indices in [0, {config.n_frames}) "
                                         "leaving at least one frame visible")
    mask = torch.zeros(1, config.n_frames, dtype=torch.bool)
    mask[0, views] = True
    return mask.to(device)


def sample_with_baseline(model, cond: torch.Tensor, kind: str, steps: int = 50, sampler: str = "ddim",
                         seed: int = 0, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples for pooled conditions (N, Q, d) and for zeros in their place, from the same noise and randomness
    (x0 clamped to [-1, 1] at every step when `clip`, as the original)."""
    def draw(c):
        generator = torch.Generator(c.device).manual_seed(seed)
        return model.sample(c, kind, steps, sampler, generator, clip)

    return draw(cond), draw(torch.zeros_like(cond))


@torch.no_grad()
def reconstruct(model, batch: dict, view_mask: torch.Tensor, steps: int = 50, sampler: str = "ddim",
                seed: int = 0, clip: bool = True) -> list[Reconstruction]:
    """Masked views (in frame order) then the BEV of a one-sample batch, with targets and baselines.

    Every rank of a ZeRO-3 run must call this together with the same batch (the model's forward and the denoiser
    run the same number of times on each rank)."""
    if batch["input_ids"].shape[0] != 1:
        raise InputError("batch", f"reconstruct takes one sample, got {batch['input_ids'].shape[0]}")
    config = model.config
    was_training = model.training
    model.eval()
    try:
        cond = model.reconstruction_conditions(batch, view_mask)
        views = view_mask[0].nonzero().flatten().tolist()
        out = []
        if views:
            rows = cond["view"][0, views]
            sample, baseline = sample_with_baseline(model, rows, "view", steps, sampler, seed, clip)
            targets = mean_targets(config, batch["view_mean"][0, views], config.pool_grid)
            out += [Reconstruction("view", v, targets[i], sample[i], baseline[i]) for i, v in enumerate(views)]
        sample, baseline = sample_with_baseline(model, cond["bev"], "bev", steps, sampler, seed + 1, clip)
        target = mean_targets(config, batch["bev_mean"], config.bev_grid)[0]
        out.append(Reconstruction("bev", None, target, sample[0], baseline[0], batch["bev_valid"][0].bool()))
        return out
    finally:
        model.train(was_training)
