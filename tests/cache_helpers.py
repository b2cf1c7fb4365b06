"""Shared set-up of the cache tests: hand-made scans through the real `ross3d prep scannet`, tiny random encoders,
and an independent reference of the original's view preparation (PIL, written here from docs/original-model.md 4.2)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from prep_scannet_scene import write_scene
from ross3d.cache import tiny
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet

SCENES = ["scene0000_00", "scene0001_00"]
PREP_OPTIONS = PrepOptions(frame_stride=2, num_frames=8, bev_size=64)


def build_inputs(root: Path) -> dict[str, Path]:
    """scans -> PREP_DIR, plus a tiny VAE, a second VAE with other weights and a tiny SigLIP."""
    for i, scene_id in enumerate(SCENES):
        write_scene(root / "scans", scene_id, n_frames=24, seed=i)
    report = prep_scannet(root / "scans", root / "prep", PREP_OPTIONS)
    assert report.ok == SCENES, report.failed
    return {"prep": root / "prep", "vae": tiny.save_tiny_vae(root / "vae", seed=0),
            "vae_other": tiny.save_tiny_vae(root / "vae_other", seed=1),
            "siglip": tiny.save_tiny_siglip(root / "siglip", seed=0)}


def reference_view(jpeg: bytes, depth_w: int, depth_h: int) -> torch.Tensor:
    """The original's frame path: PIL resize (bicubic) to (int(W*384/H), 384), crop the central 384, SigLIP
    normalisation, as (3, 384, 384) float32."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    width = int(depth_w * 384 / depth_h)
    image = image.resize((width, 384), resample=Image.BICUBIC)
    left = (width - 384) // 2
    pixels = np.asarray(image.crop((left, 0, left + 384, 384)), dtype=np.float32) / 255.0
    return torch.from_numpy((pixels - 0.5) / 0.5).permute(2, 0, 1)


def reference_vae_view(view: torch.Tensor) -> torch.Tensor:
    """docs/original-model.md 4.2 steps 1-2 on one view: clamp, bilinear to 216."""
    return F.interpolate(view[None].clamp(-1, 1), size=(216, 216), mode="bilinear")
