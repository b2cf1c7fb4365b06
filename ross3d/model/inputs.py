"""Building the LLM input: visual tokens (pooled, masked, position-encoded, row newlines) spliced at the single
`<image>` placeholder of each sample, the `<coord>` position encoding for Scan2Cap, and the aligned labels.

The visual block of every sample has the same length (`config.visual_len`), so a right-padded text batch stays
right-padded after splicing; `visual_start[b]` is where sample b's block begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ross3d.errors import InputError
from ross3d.model.config import Ross3DConfig
from ross3d.model.lm_loss import IGNORE_INDEX
from ross3d.model.position import discretize, sincos_3d
from ross3d.model.projector import add_row_newlines, pool_tokens


@dataclass
class LLMInputs:
    embeds: torch.Tensor  # (B, L', D)
    attention_mask: torch.Tensor  # (B, L') long
    labels: torch.Tensor | None  # (B, L') long, -100 at visual positions
    visual_start: torch.Tensor  # (B,) long
    input_ids: torch.Tensor  # (B, L') long, image_token_id at visual positions


def frame_order(config: Ross3DConfig, view_mask: torch.Tensor) -> torch.Tensor:
    """(B, V) long: which frame takes each frame slot of the visual block. In frame order, except with
    `view_condition: pooled+own`, where the visible frames come first and the masked ones last (each in frame order),
    so that a masked view's token states, which condition its reconstruction, can attend to every visible view
    (the LLM is causal)."""
    b, v = view_mask.shape
    if not config.own_view_condition:
        return torch.arange(v, device=view_mask.device).expand(b, v)
    return torch.sort(view_mask.long(), dim=1, stable=True).indices


def visual_tokens(config: Ross3DConfig, patch_features: torch.Tensor, voxels: torch.Tensor,
                  view_mask: torch.Tensor, mask_token: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """patch_features (B, V, P, D), voxels (B, V, g, g, 3), view_mask (B, V) -> (B, visual_len, D).

    Pool 27->14, replace masked frames by `mask_token`, add the 3D PE (also to masked frames), lay the frames out
    in `frame_order`, add row newlines.
    """
    b, v, _, d = patch_features.shape
    g = config.pool_grid
    pooled = pool_tokens(patch_features.flatten(0, 1), config.patch_grid, g).reshape(b, v, g * g, d)
    pooled = torch.where(view_mask[:, :, None, None], mask_token.to(pooled.dtype), pooled)
    pooled = pooled + sincos_3d(voxels.reshape(b, v, g * g, 3), d, pooled.dtype)
    order = frame_order(config, view_mask)
    pooled = pooled.gather(1, order[:, :, None, None].expand_as(pooled))
    return torch.stack([add_row_newlines(pooled[i], newline, g) for i in range(b)])


def image_positions(config: Ross3DConfig, input_ids: torch.Tensor) -> torch.Tensor:
    """(B,) position of the single image placeholder per sample; an error names the offending sample."""
    hits = input_ids == config.image_token_id
    counts = hits.sum(1)
    bad = (counts != 1).nonzero().flatten().tolist()
    if bad:
        raise InputError("batch['input_ids']", f"sample {bad[0]} has {int(counts[bad[0]])} image placeholders "
                         f"(id {config.image_token_id}), expected exactly 1")
    return hits.int().argmax(1)


def coord_pe(config: Ross3DConfig, ids: torch.Tensor, centres: torch.Tensor, has_box: torch.Tensor | None,
             dtype: torch.dtype) -> torch.Tensor:
    """(B, L, D) additions to the text embeddings: the k-th `<coord>` token of sample b gets the 3D PE of
    centres[b, k] (B, T, 3) where has_box[b, k] (B, T); every other position gets 0."""
    coord = ids == config.coord_token_id
    count = coord.sum(1)
    if (count > centres.shape[1]).any():
        b = int((count > centres.shape[1]).nonzero()[0])
        raise InputError("batch['box_center']", f"sample {b} has {int(count[b])} <coord> tokens but "
                                                f"{centres.shape[1]} box centres")
    has = torch.ones(centres.shape[:2], dtype=torch.bool, device=ids.device) if has_box is None else has_box.bool()
    pe = sincos_3d(discretize(centres, config.voxel_size, config.xyz_min, config.xyz_max), config.hidden_size, dtype)
    turn = (coord.cumsum(1) - 1).clamp(min=0)  # which centre each <coord> takes
    use = coord & has.gather(1, turn)
    return use[..., None].to(dtype) * pe.gather(1, turn[..., None].expand(-1, -1, pe.shape[-1]))


def splice(config: Ross3DConfig, embed_tokens: torch.nn.Module, batch: dict, visual: torch.Tensor) -> LLMInputs:
    """Embed the text, add the `<coord>` PE, and replace each sample's placeholder by its visual block."""
    ids = batch["input_ids"]
    pos = image_positions(config, ids)
    text = embed_tokens(ids.clamp(min=0))
    if "box_center" in batch and config.coord_token_id >= 0:
        text = text + coord_pe(config, ids, batch["box_center"], batch.get("has_box"), text.dtype)
    labels = batch.get("labels")
    mask = batch.get("attention_mask", torch.ones_like(ids)).long()
    n_vis = visual.shape[1]
    ones = torch.ones(n_vis, dtype=torch.long, device=ids.device)
    embeds, masks, labs, new_ids = [], [], [], []
    for b in range(ids.shape[0]):
        p = int(pos[b])
        embeds.append(torch.cat([text[b, :p], visual[b].to(text.dtype), text[b, p + 1:]]))
        masks.append(torch.cat([mask[b, :p], ones, mask[b, p + 1:]]))
        new_ids.append(torch.cat([ids[b, :p], ones * config.image_token_id, ids[b, p + 1:]]))
        if labels is not None:
            labs.append(torch.cat([labels[b, :p], ones * IGNORE_INDEX, labels[b, p + 1:]]))
    return LLMInputs(torch.stack(embeds), torch.stack(masks), torch.stack(labs) if labels is not None else None,
                     pos, torch.stack(new_ids))
