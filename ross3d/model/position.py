"""Parameter-free sin-cos 3D position encoding on 0.1 m voxel indices (Video-3D-LLM `avg-discrete-sin3d`).

For D output channels, each axis gets `D // 3` channels: channel i uses the frequency `10000^(2*floor(i/2)/(D//3))`,
sin for even and cos for odd i; blocks are concatenated [x, y, z] and the last `D % 3` channels are zero. Computed
in fp32 on integer voxel indices, then cast to the requested dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def discretize(xyz: torch.Tensor, voxel_size: float, xyz_min: Sequence[float],
               xyz_max: Sequence[float]) -> torch.Tensor:
    """Metric coordinates (..., 3) -> voxel indices (..., 3) int64: clamp to [min, max], subtract min, /voxel, round."""
    lo = torch.tensor(xyz_min, dtype=torch.float32, device=xyz.device)
    hi = torch.tensor(xyz_max, dtype=torch.float32, device=xyz.device)
    xyz = torch.maximum(torch.minimum(xyz.float(), hi), lo)
    return torch.round((xyz - lo) / voxel_size).long()


def sincos_3d(voxels: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Encode voxel indices (..., 3) as (..., dim) sin-cos features (fp32 arithmetic)."""
    feats = dim // 3
    i = torch.arange(feats, dtype=torch.float32, device=voxels.device)
    dim_t = 10000.0 ** (2 * torch.div(i, 2, rounding_mode="floor") / feats)
    angles = voxels.float()[..., None] / dim_t  # (..., 3, feats)
    enc = torch.where(i.long() % 2 == 0, torch.sin(angles), torch.cos(angles))
    enc = enc.flatten(-2)
    pad = dim - enc.shape[-1]
    if pad:
        enc = torch.nn.functional.pad(enc, (0, pad))
    return enc.to(dtype)
