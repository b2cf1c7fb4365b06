"""Gaussian diffusion for the denoiser: Nichol-Dhariwal cosine schedule, q_sample, the denoising MSE, and sampling.

Training follows the original (docs/original-model.md 5.3): 1000 steps, `alpha_bar(t) = cos^2((t + 0.008)/1.008 * pi/2)`,
`beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999)`, epsilon prediction, plain per-element MSE. The
model may instead predict `v = sqrt(abar) eps - sqrt(1 - abar) x0` (`prediction_type: v_prediction`, Salimans & Ho
2022), whose loss weighs the x0 error at large t, where only the condition can tell the target (docs/model.md).
Sampling uses diffusers' DDPMScheduler / DDIMScheduler with `beta_schedule="squaredcos_cap_v2"`, whose betas are
the same formula (tests check this), respaced to fewer steps by the scheduler's `set_timesteps`. As the original's
`sample()` (`clip_denoised=True`), each step clamps the predicted x0 to [-1, 1] (`clip_sample`); DDPM's posterior
mean is then taken from the clamped x0, and DDIM re-derives eps from it (`use_clipped_model_output`), as
guided-diffusion's DDIM step does. `clip=False` samples without clamping (docs/model.md, differences).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ross3d.errors import ConfigError

SAMPLERS = ("ddpm", "ddim")
PREDICTION_TYPES = ("epsilon", "v_prediction")  # diffusers' names


def check_prediction_type(value: str) -> str:
    """`value` when it is one of PREDICTION_TYPES, else a ConfigError naming the option."""
    if value not in PREDICTION_TYPES:
        raise ConfigError(f"model.prediction_type: {value!r} is not one of {PREDICTION_TYPES}")
    return value


def cosine_betas(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """(steps,) float64 betas of the cosine schedule."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)],
                        dtype=torch.float64, device="cpu")  # also when the model is built on the meta device


class GaussianDiffusion:
    """The cosine-schedule forward process and the training loss of an epsilon- or v-predicting model."""

    def __init__(self, steps: int = 1000, prediction_type: str = "epsilon"):
        self.steps = steps
        self.prediction_type = check_prediction_type(prediction_type)
        self.betas = cosine_betas(steps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at timesteps t (N,), shaped (N, 1, ...) to broadcast over rows of `like`, in its dtype."""
        return self.alphas_cumprod.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, with t (N,) integer timesteps."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the model predicts for x_t = q_sample(x0, t, noise): the noise, or v = sqrt(abar) eps - sqrt(1 - abar)
        x0."""
        if self.prediction_type == "epsilon":
            return noise
        abar = self._abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def loss(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-element (target - model(x_t, t))^2 with t ~ U{0..T-1} and eps ~ N(0, I) drawn per row of x0."""
        dev = generator.device if generator else "cpu"
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0.device, x0.dtype)
        return (self.target(x0, t, noise) - model(self.q_sample(x0, t, noise), t)) ** 2

    def scheduler(self, sampler: str, clip: bool = True):
        """A diffusers scheduler with this schedule and prediction type (x0 clamped to [-1, 1] when `clip`)."""
        from diffusers import DDIMScheduler, DDPMScheduler

        common = dict(num_train_timesteps=self.steps, beta_schedule="squaredcos_cap_v2", clip_sample=clip,
                      clip_sample_range=1.0, prediction_type=self.prediction_type)
        if sampler == "ddpm":
            return DDPMScheduler(variance_type="fixed_small", **common)
        if sampler == "ddim":
            return DDIMScheduler(set_alpha_to_one=True, **common)
        raise ConfigError(f"sampler: {sampler!r} is not one of {SAMPLERS}")

    @torch.no_grad()
    def sample(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               steps: int = 50, sampler: str = "ddim", generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", clip: bool = True) -> torch.Tensor:
        """Draw x0 of `shape` by running `steps` respaced reverse steps from pure noise (x0 clamped when `clip`)."""
        sched = self.scheduler(sampler, clip)
        sched.set_timesteps(steps, device=device)
        dev = generator.device if generator else "cpu"
        x = torch.randn(shape, generator=generator, device=dev).to(device)
        extra = {"use_clipped_model_output": clip} if sampler == "ddim" else {}
        for t in sched.timesteps:
            eps = model(x, t.expand(shape[0]).to(device))
            x = sched.step(eps, t, x, generator=generator, **extra).prev_sample
        return x
