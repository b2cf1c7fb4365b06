"""Sampling a denoiser fitted (a few hundred CPU steps) to two fixed (condition, latent) pairs returns each latent,
with an error far below the unconditioned baseline's (the same sampling with the condition replaced by zeros)."""

from __future__ import annotations

import pytest
import torch

from ross3d.model.config import preset
from ross3d.model.ross3d import Ross3D
from ross3d.visualize.reconstruct import latent_error, sample_with_baseline
from torch_threads import one_torch_thread

CONFIG = preset("tiny", n_frames=4, pool_grid=7, bev_latent_grid=16, denoiser_depth=1, denoiser_dim=128)


@pytest.fixture
def one_thread():
    """The fit is many small ops."""
    with one_torch_thread():
        yield


def _fit(model: Ross3D, data: list[tuple[str, torch.Tensor, torch.Tensor]], steps: int, rows: int = 8) -> None:
    """The training objective (eps-MSE at uniform t) on every (kind, condition, latent) triple."""
    opt = torch.optim.Adam(model.denoiser.parameters(), lr=4e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(model.diffusion.loss(lambda x, t: model.denoiser(x, t, c.expand(rows, -1, -1), kind),
                                            x0.expand(rows, -1, -1, -1), generator).mean() for kind, c, x0 in data)
        loss.backward()
        opt.step()
        sched.step()


def test_fitted_denoiser_returns_its_latent_far_below_the_unconditioned_baseline(one_thread):
    torch.manual_seed(0)
    model = Ross3D(CONFIG)
    g = torch.Generator().manual_seed(1)
    data = []
    grid = CONFIG.pool_grid
    for _ in range(2):  # two pairs, so the output must depend on the condition
        cond = torch.randn(1, grid * grid, CONFIG.denoiser_dim, generator=g)
        data.append(("view", cond, torch.randn(1, CONFIG.denoiser_channels, grid, grid, generator=g) * 0.5))
    _fit(model, data, steps=800)
    model.eval()
    for kind, cond, x0 in data:
        sample, baseline = sample_with_baseline(model, cond, kind, steps=10, sampler="ddim", seed=3)
        mse, cos = latent_error(sample[0], x0[0])
        base_mse, base_cos = latent_error(baseline[0], x0[0])
        assert mse < 0.05 * float(x0.var()), (mse, float(x0.var()))
        assert mse < 0.05 * base_mse and cos > 0.95 and base_cos < 0.6, (mse, base_mse, cos, base_cos)
    # the output follows the condition: the first condition's sample is far from the second latent
    sample, _ = sample_with_baseline(model, data[0][1], "view", steps=10, sampler="ddim", seed=3)
    assert latent_error(sample[0], data[1][2][0])[0] > float(data[1][2].var())
