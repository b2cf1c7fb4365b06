"""Fit the demo's tiny FLUX-shaped AutoencoderKL to a PREP_DIR's frames and BEVs (docs/demo.md).

A random VAE's posterior is wider than its signal (posterior std about 1 against a spread of the means of about
0.4), so a reconstruction target drawn from it is mostly sampling noise. A short training loop on the scenes'
own images (random crops, MSE plus a small KL term, Adam) gives a decoder that turns the latents back into the
frames. The posterior's width is fixed while fitting (`fixed_logvar`): left free, the encoder's log-variance drifted
to the clamp (+20, std 22,000) on flat regions the decoder ignores, and the cached targets of those cells were
noise thousands of times larger than the signal (docs/demo.md, "The fitted VAE"). Every fourth kept frame of each
scene is held out for the reported PSNR. The fitted `shift_factor` and `scaling_factor` are the mean and 1 / std of
the posterior means, so the denoiser's targets `(z - shift) * scale` have unit scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ross3d.errors import InputError
from ross3d.progress import NullProgress, Progress

HOLDOUT_EVERY = 4  # kept frame k of a scene is held out when k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


@dataclass
class FitOptions:
    steps: int = 250
    batch: int = 8
    crop: int = 48  # training crops (the VAE is convolutional); a multiple of 8
    lr: float = 3e-3
    kl_weight: float = 1e-6
    fixed_logvar: float = -6.0  # the encoder's log-variance output, everywhere and throughout (posterior std 0.05)
    seed: int = 0


@dataclass
class FitReport:
    steps: int
    seconds: float
    train_images: int
    heldout_frames: int
    heldout_psnr_db: float  # round trip through the posterior mean, images in [0, 1]
    mean_logvar: float  # mean posterior log-variance over the training images
    max_logvar: float  # the largest posterior log-variance of any latent cell of any training image
    posterior_std: float  # exp(0.5 * mean_logvar)
    mean_spread: float  # std of the posterior means
    shift_factor: float
    scaling_factor: float

    def to_dict(self) -> dict:
        return asdict(self)


def prep_images(prep_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(train views, held-out views, BEVs) in [-1, 1]: views (N, 3, 216, 216) as the cache feeds the VAE, every
    kept frame of every ok scene; BEVs (3, S, S) each."""
    import pyarrow.parquet as pq
    import zarr

    from ross3d.cache.inputs import read_prep
    from ross3d.cache.preprocess import decode_view, to_unit_range, vae_view_input

    index = read_prep(prep_dir, ("uniform",))
    train, held, bevs = [], [], []
    for scene in index.scenes:
        scene_dir = Path(prep_dir) / "scenes" / scene.scene_id
        jpegs = pq.read_table(scene_dir / "frames.parquet", columns=["color_jpeg"]).column("color_jpeg").to_pylist()
        for k, jpeg in enumerate(jpegs):
            view = decode_view(jpeg, *scene.depth_size, source=f"{scene_dir / 'frames.parquet'} frame {k}")
            (held if k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else train).append(view)
        bevs.append(to_unit_range(np.asarray(zarr.open_group(scene_dir / "arrays.zarr", mode="r")["bev/rgb"][...])))
    if not train or not held:
        raise InputError(prep_dir, f"too few frames to fit a VAE ({len(train)} train, {len(held)} held out)")
    to_vae = lambda views: vae_view_input(to_unit_range(np.stack(views)))  # noqa: E731
    return to_vae(train), to_vae(held), bevs


def _crops(images: list[torch.Tensor], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for k in rng.integers(len(images), size=n):
        image = images[int(k)]
        top = int(rng.integers(image.shape[-2] - size + 1))
        left = int(rng.integers(image.shape[-1] - size + 1))
        out.append(image[:, top:top + size, left:left + size])
    return torch.stack(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two image batches in [-1, 1], measured on [0, 1]."""
    mse = float((((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def round_trip(vae, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Encode to the posterior mean and decode, in batches."""
    return torch.cat([vae.decode(vae.encode(images[i:i + batch]).latent_dist.mean).sample
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def posterior_stats(vae, images: list[torch.Tensor]) -> tuple[float, float, float, float]:
    """(mean log-variance, largest log-variance, mean of the posterior means, std of the posterior means) over the
    images."""
    means, logvars = [], []
    for image in images:
        dist = vae.encode(image[None]).latent_dist
        means.append(dist.mean.flatten())
        logvars.append(dist.logvar.flatten())
    mean, logvar = torch.cat(means), torch.cat(logvars)
    return float(logvar.mean()), float(logvar.max()), float(mean.mean()), float(mean.std())


def fix_posterior_width(vae, logvar: float) -> None:
    """Make the encoder's log-variance output `logvar` everywhere and keep it there while training: the
    log-variance half of `conv_out` gets zero weights and a constant bias, and hooks zero their gradients (Adam
    then never moves them)."""
    conv = vae.encoder.conv_out
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[half:].zero_()
        conv.bias[half:].fill_(logvar)
    for param in (conv.weight, conv.bias):
        keep = torch.ones_like(param)
        keep[half:] = 0
        param.register_hook(lambda grad, keep=keep: grad * keep)


def fit_vae(vae, train: torch.Tensor, held: torch.Tensor, bevs: list[torch.Tensor], options: FitOptions = FitOptions(),
            progress: Progress = NullProgress()) -> FitReport:
    """Train `vae` in place on random crops of the training views and BEVs; set its shift and scaling factors."""
    if options.crop % 8 or options.crop > train.shape[-1]:
        raise InputError("crop", f"{options.crop} must be a multiple of 8 no larger than {train.shape[-1]}")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    fix_posterior_width(vae, options.fixed_logvar)
    images = list(train) + bevs
    optimizer = torch.optim.Adam(vae.parameters(), lr=options.lr)
    vae.train()
    start = time.perf_counter()
    progress.start("vae", options.steps, "fitting the VAE", unit="steps")
    for step in range(options.steps):
        lr = options.lr * 0.5 * (1 + math.cos(math.pi * step / options.steps))  # cosine to 0
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = _crops(images, options.batch, options.crop, rng)
        dist = vae.encode(x).latent_dist
        y = vae.decode(dist.sample()).sample
        loss = ((y - x) ** 2).mean() + options.kl_weight * dist.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.advance("vae")
    progress.finish("vae")
    seconds = time.perf_counter() - start
    vae.eval()
    mean_logvar, max_logvar, shift, spread = posterior_stats(vae, list(train) + bevs)
    vae.register_to_config(shift_factor=round(shift, 6), scaling_factor=round(1.0 / spread, 6))
    held_psnr = psnr(round_trip(vae, held), held)
    return FitReport(options.steps, round(seconds, 1), len(images), len(held), round(held_psnr, 2),
                     round(mean_logvar, 3), round(max_logvar, 3), round(math.exp(0.5 * mean_logvar), 4),
                     round(spread, 4), round(shift, 6), round(1.0 / spread, 6))


def save_fitted_tiny_vae(prep_dir: str | Path, out_dir: str | Path, options: FitOptions = FitOptions(),
                         progress: Progress = NullProgress()) -> FitReport:
    """The tiny FLUX-shaped VAE fitted to PREP_DIR's frames, saved (diffusers format) with OUT_DIR/fit.json."""
    import json

    from ross3d.cache.tiny import build_vae, save_model, tiny_flux_vae_config

    train, held, bevs = prep_images(prep_dir)
    vae = build_vae(tiny_flux_vae_config(), options.seed)
    report = fit_vae(vae, train, held, bevs, options, progress)
    readme = (f"tiny FLUX-shaped VAE fitted to the frames of {prep_dir} ({options.steps} steps; built by "
              f"ross3d.cache.fit_vae for the demo and tests; not a trained FLUX VAE)\n")
    save_model(vae, out_dir, readme)
    (Path(out_dir) / "fit.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report
