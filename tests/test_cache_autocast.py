"""Caching under autocast (`cache-latents --dtype bf16|fp16`): the encoders run in the reduced dtype (their outputs
differ from fp32 by that dtype's rounding, not more) and still hand back float32 on the CPU. bf16 runs on the CPU;
fp16 autocast needs a CUDA device."""

from __future__ import annotations

import pytest
import torch

from ross3d.cache import tiny
from ross3d.cache.encoders import VaeEncoder, VisionEncoder

# relative error of one rounding: bf16 keeps 8 significant bits (2^-8), fp16 11 (2^-11); a few layers compound it
BOUND = {"bf16": 0.1, "fp16": 0.02}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _devices():
    yield pytest.param("cpu", "bf16", id="cpu-bf16")
    for dtype in ("bf16", "fp16"):
        yield pytest.param("cuda", dtype, id=f"cuda-{dtype}", marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="fp16/bf16 autocast on CUDA needs a GPU (none on this machine)"))


@pytest.mark.parametrize("device, dtype", list(_devices()))
def test_encoders_under_autocast_stay_within_the_dtype_rounding(device, dtype, tmp_path):
    vae_dir = tiny.save_tiny_vae(tmp_path / "vae", seed=0)
    siglip_dir = tiny.save_tiny_siglip(tmp_path / "siglip", seed=0)
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    dev = torch.device(device)
    full_mean, full_logvar = VaeEncoder(vae_dir, dev, "fp32").encode(frames)
    mean, logvar = VaeEncoder(vae_dir, dev, dtype).encode(frames)
    assert mean.dtype == logvar.dtype == torch.float32 and mean.device.type == "cpu"
    assert 0 < _rel(mean, full_mean) < BOUND[dtype] and _rel(logvar, full_logvar) < BOUND[dtype]
    vision = VisionEncoder(siglip_dir, dev, "fp32")
    images = torch.rand(2, 3, vision.image_size, vision.image_size, generator=gen) * 2 - 1
    full = vision.encode(images)
    reduced = VisionEncoder(siglip_dir, dev, dtype).encode(images)
    assert reduced.dtype == torch.float32 and 0 < _rel(reduced, full) < BOUND[dtype]
