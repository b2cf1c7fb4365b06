"""Batched encoding of loaded scenes: views and BEVs of several scenes are concatenated and cut into batches
(a batch may span scenes), each batch one encoder call; results are split back into per-scene arrays in the
CACHE_DIR contract layout."""

from __future__ import annotations

import numpy as np
import torch

from ross3d.cache.encoders import VaeEncoder, VisionEncoder
from ross3d.cache.inputs import LoadedScene
from ross3d.cache.preprocess import to_unit_range, vae_view_input
from ross3d.cache.store import BF16, bf16_bits
from ross3d.progress import Progress


def _batched(x: torch.Tensor, batch_size: int, fn, progress: Progress) -> list:
    outs = []
    for start in range(0, len(x), batch_size):
        outs.append(fn(x[start:start + batch_size]))
        progress.advance("images", min(batch_size, len(x) - start))
    return outs


def _vae_all(vae: VaeEncoder, x: torch.Tensor, batch_size: int, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    outs = _batched(x, batch_size, vae.encode, progress)
    return torch.cat([m for m, _ in outs]).numpy(), torch.cat([lv for _, lv in outs]).numpy()


def encode_group(scenes: list[LoadedScene], vae: VaeEncoder, vision: VisionEncoder | None, batch_size: int,
                 progress: Progress) -> list[tuple[dict[str, np.ndarray], dict[str, dict]]]:
    """Encode a group of scenes; per scene (arrays, attrs) keyed by contract paths."""
    counts = [len(s.frame_idx) for s in scenes]
    # uint8 goes to the encoder's device; normalisation and the 216 resize run there
    views = to_unit_range(torch.from_numpy(np.concatenate([s.views for s in scenes])).to(vae.device))
    view_mean, view_logvar = _vae_all(vae, vae_view_input(views), batch_size, progress)
    bevs = [to_unit_range(torch.from_numpy(s.bev_rgb).to(vae.device))[None] for s in scenes]
    if len({b.shape for b in bevs}) == 1:
        bev_mean, bev_logvar = _vae_all(vae, torch.cat(bevs), batch_size, progress)
    else:  # scenes rendered at different BEV sizes cannot share a batch
        parts = [_vae_all(vae, b, batch_size, progress) for b in bevs]
        bev_mean, bev_logvar = [p[0][0] for p in parts], [p[1][0] for p in parts]
    features = None
    if vision is not None:
        features = torch.cat(_batched(views, batch_size, vision.encode, progress))
    results, start = [], 0
    for i, (scene, n) in enumerate(zip(scenes, counts)):
        arrays = dict(scene.copies)
        arrays["bev/vae_mean"], arrays["bev/vae_logvar"] = bev_mean[i], bev_logvar[i]
        factors = {"shift_factor": vae.shift_factor, "scaling_factor": vae.scaling_factor}
        attrs: dict[str, dict] = {"bev/vae_mean": factors, "bev/vae_logvar": factors}
        for strategy, pos in scene.positions.items():
            rows = start + pos
            arrays[f"{strategy}/frames/vae_mean"] = view_mean[rows]
            arrays[f"{strategy}/frames/vae_logvar"] = view_logvar[rows]
            attrs[f"{strategy}/frames/vae_mean"] = attrs[f"{strategy}/frames/vae_logvar"] = factors
            if features is not None:
                arrays[f"{strategy}/frames/vision"] = bf16_bits(features[torch.as_tensor(rows)])
                attrs[f"{strategy}/frames/vision"] = {"encoding": BF16}
        results.append((arrays, attrs))
        start += n
    return results


def images_per_scene(scene_frames: dict[str, np.ndarray], with_vision: bool) -> int:
    """Encoder inputs of a scene: each unique view once for the VAE (and once for SigLIP) plus the BEV."""
    unique = len(np.unique(np.concatenate(list(scene_frames.values()))))
    return unique * (2 if with_vision else 1) + 1
