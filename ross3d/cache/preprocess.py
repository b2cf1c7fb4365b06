"""Image preparation shared by the SigLIP and VAE paths, exactly as the original: PIL bicubic resize of the decoded
JPEG to (int(depth_w * 384 / depth_h), 384), centre crop 384, [-1, 1] (mean = std = 0.5); the VAE sees that 384 view
bilinearly resized to 216 (no antialias) and the BEV mapped to [-1, 1] without resizing."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ross3d.errors import InputError


@dataclass(frozen=True)
class PreprocessParams:
    """Every number that shapes an encoder input; part of the cache fingerprint."""

    view_size: int = 384
    vae_view_size: int = 216
    mask_size: int = 27  # the BEV latent's side / 2 (`bev_params`): 27 for 432 px BEVs and an 8x downsampling VAE
    resize: str = "PIL bicubic to (int(depth_w*view_size/depth_h), view_size), centre crop left=(w-view_size)//2"
    normalisation: str = "x/255 mapped to [-1,1] (mean=std=0.5)"
    vae_view_resize: str = "torch bilinear, align_corners=False, antialias=False"
    bev: str = "rgb/255 mapped to [-1,1], no resize"
    bev_mask: str = "bilinear (align_corners=False) of rgb/255 to mask_size, channel mean > 0"

    def to_dict(self) -> dict:
        return asdict(self)


PARAMS = PreprocessParams()


def resized_width(depth_w: int, depth_h: int, size: int = PARAMS.view_size) -> int:
    """Width of the resize before the centre crop, from the depth frame's aspect (512 for 640x480)."""
    return int(depth_w * size / depth_h)


def decode_view(jpeg: bytes, depth_w: int, depth_h: int, source: str = "color_jpeg",
                size: int = PARAMS.view_size) -> np.ndarray:
    """One JPEG -> (size, size, 3) uint8: PIL bicubic resize to the depth aspect, then the centre crop."""
    try:
        image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    except OSError as err:
        raise InputError(source, f"cannot decode JPEG: {err}") from None
    width = resized_width(depth_w, depth_h, size)
    if width < size:
        raise InputError(source, f"depth aspect {depth_w}x{depth_h} gives width {width} < crop {size}")
    image = image.resize((width, size), Image.BICUBIC)
    left = (width - size) // 2
    return np.array(image.crop((left, 0, left + size, size)))


def to_unit_range(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]: (x / 255 - 0.5) / 0.5."""
    t = torch.as_tensor(rgb).to(torch.float32).div_(255.0)
    return t.sub_(0.5).div_(0.5).movedim(-1, -3).contiguous()


def vae_view_input(views: torch.Tensor, size: int = PARAMS.vae_view_size) -> torch.Tensor:
    """(N, 3, 384, 384) in [-1, 1] -> (N, 3, size, size), bilinear without antialias (docs/original-model.md 4.2)."""
    return F.interpolate(views.clamp(-1, 1), size=(size, size), mode="bilinear", align_corners=False)


def bev_params(bev_size: int, vae_downsample: int, source) -> PreprocessParams:
    """PARAMS with the BEV mask on the grid the BEV latent is grouped to (2x2 latent cells), so that any BEV size
    trains. For the original's 432 px and FLUX's 8x VAE that is 27, so such caches keep their fingerprint."""
    cell = 2 * vae_downsample
    if bev_size % cell:
        raise InputError(source, f"BEV renders of {bev_size} px do not split into the 2x2 latent cells of this VAE "
                                 f"(downsampling {vae_downsample}): use a multiple of {cell} (prep scannet "
                                 f"--bev-size; the original's is 432)")
    return replace(PARAMS, mask_size=bev_size // cell)


def bev_mask(bev_rgb: np.ndarray, size: int = PARAMS.mask_size) -> np.ndarray:
    """(S, S, 3) uint8 -> (size, size) bool: the original's BEV loss mask (non-black cells after a bilinear
    resize without antialias)."""
    x = torch.as_tensor(bev_rgb).to(torch.float32).div(255.0).movedim(-1, 0)[None]
    small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (small.mean(dim=1)[0] > 0).numpy()
