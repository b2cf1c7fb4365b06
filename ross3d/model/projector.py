"""Visual token path: the mlp2x_gelu projector, bilinear 27->14 pooling, and per-row newline layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """mlp2x_gelu: Linear(C_v -> D), exact GELU, Linear(D -> D); applied to all patch tokens before pooling."""

    def __init__(self, vision_dim: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, hidden_size)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def pool_tokens(tokens: torch.Tensor, grid_in: int, grid_out: int) -> torch.Tensor:
    """(N, grid_in^2, D) row-major tokens -> (N, grid_out^2, D) by bilinear interpolation (align_corners False)."""
    n, _, d = tokens.shape
    img = tokens.transpose(1, 2).reshape(n, d, grid_in, grid_in)
    img = F.interpolate(img, size=(grid_out, grid_out), mode="bilinear", align_corners=False)
    return img.flatten(2).transpose(1, 2)


def add_row_newlines(tokens: torch.Tensor, newline: torch.Tensor, grid: int) -> torch.Tensor:
    """(V, grid^2, D) -> (V * grid * (grid + 1), D): every row of `grid` tokens is followed by `newline` (D,)."""
    v, _, d = tokens.shape
    rows = tokens.reshape(v, grid, grid, d)
    nl = newline.to(tokens.dtype).expand(v, grid, 1, d)
    return torch.cat([rows, nl], dim=2).reshape(-1, d)


def strip_row_newlines(states: torch.Tensor, n_frames: int, grid: int) -> torch.Tensor:
    """Inverse layout of `add_row_newlines`: (V * grid * (grid + 1), D) -> (V, grid^2, D), newlines dropped."""
    d = states.shape[-1]
    return states.reshape(n_frames, grid, grid + 1, d)[:, :, :grid].reshape(n_frames, grid * grid, d)
