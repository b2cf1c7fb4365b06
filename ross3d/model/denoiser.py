"""The DiT denoiser of Ross3D (docs/original-model.md 5): per-token adaLN blocks conditioned on attention-pooled
LLM hidden states, with separate view and BEV input embedders, position tables and poolers. With `own_view`, a zero-initialised
projection `z_own_view` adds each masked view's own hidden states to its condition, token by token (not in the
original: docs/model.md, decision 3).

Parameter names follow the original's `mm_inv_projector.net.*` so checkpoints map one to one:
`x_embedder_{view,bev}.proj` (1x1 convs), `pos_embed_{view,bev}`, `t_embedder.mlp`, `z_embedder_{view,bev}`
(poolers: `proj.1`, `k`, `v`, `cls_token`, `linear`), `blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2,
adaLN_modulation.1}`, `final_layer`.
Unlike the original, DiT initialisation runs (xavier linears, sin-cos tables, adaLN-zero).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("view", "bev")


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid*grid, dim) 2D sin-cos table (DiT/MAE layout: first half encodes x, second half y; sin then cos)."""
    def axis(pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gx, gy = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return torch.from_numpy(np.concatenate([axis(gx), axis(gy)], axis=1)).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (bias) and an output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, d = x.shape
        q, k, v = self.qkv(x).reshape(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, s, d))


class Mlp(nn.Module):
    """fc1 -> tanh-GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TimestepEmbedder(nn.Module):
    """256-dim sinusoid of the integer timestep (cos half first, max period 1e4) -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.mlp[0].weight.dtype))


class AttentionPooler(nn.Module):
    """Pools all tokens of all conditioning frames into Q learned queries: kv = Linear(SiLU(z)), no q projection."""

    def __init__(self, cond_dim: int, dim: int, queries: int, heads: int):
        super().__init__()
        self.heads = heads
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, dim))
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(1, queries, dim))
        self.linear = nn.Linear(dim, dim, bias=False)

    def forward(self, z: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """z (B, S, cond_dim), key_mask (B, S) bool (True = attend) -> (B, Q, dim)."""
        b, s, _ = z.shape
        kv = self.proj(z)
        d, h = kv.shape[-1], self.heads
        k = self.k(kv).reshape(b, s, h, d // h).transpose(1, 2)
        v = self.v(kv).reshape(b, s, h, d // h).transpose(1, 2)
        q = self.cls_token.expand(b, -1, -1).reshape(b, -1, h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.linear(out.transpose(1, 2).reshape(b, -1, d))


class DiTBlock(nn.Module):
    """Pre-LN transformer block with per-token adaLN-zero modulation from the condition c (N, Q, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2 * self.mlp(modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    """adaLN shift/scale then Linear(D -> channels)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    """1x1 convolution from latent channels to the model width (timm PatchEmbed with patch 1)."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Denoiser(nn.Module):
    """Epsilon-predicting DiT over (N, C, g, g) latents; `kind` selects the view or BEV embedders and tables."""

    def __init__(self, channels: int, cond_dim: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 view_grid: int, bev_grid: int, own_view: bool = False):
        super().__init__()
        self.channels = channels
        self.grids = {"view": view_grid, "bev": bev_grid}
        self.ln_pre = nn.LayerNorm(cond_dim, elementwise_affine=False, eps=1e-5)
        self.x_embedder_view = PatchEmbed(channels, dim)
        self.x_embedder_bev = PatchEmbed(channels, dim)
        self.pos_embed_view = nn.Parameter(torch.zeros(1, view_grid * view_grid, dim))
        self.pos_embed_bev = nn.Parameter(torch.zeros(1, bev_grid * bev_grid, dim))
        self.t_embedder = TimestepEmbedder(dim)
        self.z_embedder_view = AttentionPooler(cond_dim, dim, view_grid * view_grid, heads)
        self.z_embedder_bev = AttentionPooler(cond_dim, dim, bev_grid * bev_grid, heads)
        self.z_own_view = nn.Linear(cond_dim, dim) if own_view else None
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(dim, channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation: xavier linears with zero bias, sin-cos tables, N(0, .02) for t-MLP and queries,
        zero adaLN modulation and zero final projection (adaLN-zero), zero own-view projection."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for kind in KINDS:
            table = getattr(self, f"pos_embed_{kind}")
            if not getattr(table, "_is_hf_initialized", False):  # a table transformers' from_pretrained loaded stays
                table.data.copy_(sincos_2d(table.shape[-1], self.grids[kind])[None])
            conv = getattr(self, f"x_embedder_{kind}").proj
            nn.init.xavier_uniform_(conv.weight)  # 1x1 kernel: the fans of the (out, in) matrix
            nn.init.zeros_(conv.bias)
            nn.init.normal_(getattr(self, f"z_embedder_{kind}").cls_token, std=0.02)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in [*self.blocks, self.final_layer]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        if self.z_own_view is not None:
            nn.init.zeros_(self.z_own_view.weight)
            nn.init.zeros_(self.z_own_view.bias)

    def condition(self, states: torch.Tensor, key_mask: torch.Tensor, kind: str) -> torch.Tensor:
        """LLM hidden states (B, S, cond_dim) of the conditioning frames -> pooled condition (B, Q, dim), fp32."""
        pooler = getattr(self, f"z_embedder_{kind}")
        return pooler(self.ln_pre(states.float()).to(pooler.cls_token.dtype), key_mask)

    def own_condition(self, frames: torch.Tensor) -> torch.Tensor:
        """Every frame's own hidden states (B, V, T, cond_dim), T = view_grid^2 in the view latent's token order ->
        per-token additions to that view's condition (B, V, T, dim), fp32."""
        return self.z_own_view(self.ln_pre(frames.float()).to(self.z_own_view.weight.dtype)).float()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, kind: str) -> torch.Tensor:
        """Predict eps for x (N, C, g, g) at timesteps t (N,) given per-row pooled conditions cond (N, Q, dim).

        Computes in the parameters' dtype (fp32 unless the trainer casts the module) and returns fp32."""
        n, _, g, _ = x.shape
        dtype = self.final_layer.linear.weight.dtype
        h = getattr(self, f"x_embedder_{kind}")(x.to(dtype)) + getattr(self, f"pos_embed_{kind}")
        c = self.t_embedder(t)[:, None, :] + cond.to(dtype)
        for block in self.blocks:
            h = block(h, c)
        return self.final_layer(h, c).float().transpose(1, 2).reshape(n, self.channels, g, g)
