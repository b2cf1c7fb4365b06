"""Grounding head: InfoNCE between the `<ground>` query hidden state and object features plus a learned
"no object" slot (docs/original-model.md 6.2).

Object feature = mean of the pre-pooling projector outputs of the object's member (frame, patch) cells, plus the
3D position encoding of its discretised box centre (zero vector + PE when no patch qualifies). Both sides go
through Linear-ReLU-LayerNorm-Linear, are L2-normalised, and their cosine similarity divided by tau (0.07) gives
the logits. The loss is multi-positive: `logsumexp(all) - logsumexp(positives)`, in fp32. An empty positive set
makes the zero-target slot the positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ross3d.model.position import sincos_3d


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim), nn.Linear(dim, dim))


def object_features(patch_features: torch.Tensor, membership: torch.Tensor,
                    centre_voxels: torch.Tensor) -> torch.Tensor:
    """patch_features (V, P, D), membership (N, V, P) bool, centre_voxels (N, 3) -> (N, D) in fp32."""
    member = membership.flatten(1).to(patch_features.dtype)  # (N, V*P)
    sums = member @ patch_features.flatten(0, 1)
    counts = member.sum(1, keepdim=True).clamp(min=1)
    return sums.float() / counts.float() + sincos_3d(centre_voxels, patch_features.shape[-1])


class GroundingHead(nn.Module):
    """Projection MLPs for queries and objects, a learned zero target, and the fixed temperature."""

    def __init__(self, dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.obj = _mlp(dim)
        self.query = _mlp(dim)
        self.zero_target = nn.Parameter(torch.randn(dim))

    def scores(self, query: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """query (D,) or (Q, D), objects (N, D) -> cosine similarities (N + 1,) or (Q, N + 1); the last entry is the
        zero target. The objects go through their MLP once for all queries."""
        cand = torch.cat([objects.to(self.zero_target.dtype), self.zero_target[None]], dim=0)
        q = F.normalize(self.query(query.to(self.zero_target.dtype)).float(), dim=-1)
        k = F.normalize(self.obj(cand).float(), dim=-1)
        return q @ k.T

    def loss(self, scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Multi-positive InfoNCE over scores (..., N + 1) with positives (..., N) bool; none -> the zero slot.
        One loss per query: (...)."""
        pos = torch.cat([positives, ~positives.any(-1, keepdim=True)], -1)
        logits = scores.float() / self.temperature
        return torch.logsumexp(logits, -1) - torch.logsumexp(logits.masked_fill(~pos, float("-inf")), -1)
