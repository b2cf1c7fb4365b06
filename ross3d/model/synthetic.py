"""Random batches in the trainer's batch format (see ross3d.model.ross3d), for tests and benchmarks."""

from __future__ import annotations

import torch

from ross3d.model.config import Ross3DConfig


def random_batch(config: Ross3DConfig, batch_size: int = 2, text_len: int = 24, n_objects: int = 5,
                 grounding: list[bool] | None = None, seed: int = 0) -> dict:
    """A right-padded batch with random cached tensors; the second half of each text is labelled.

    Grounding samples end with the `<ground>` token (labelled); with `config.coord_token_id >= 0` every sample
    carries one `<coord>` token and a box centre. Sample b has b padding tokens at the end.
    """
    g = torch.Generator().manual_seed(seed)
    v, p, pg = config.n_frames, config.patch_grid, config.pool_grid
    grounding = grounding or [False] * batch_size
    low = max(config.ground_token_id, config.coord_token_id, 10) + 1
    ids = torch.randint(low, config.vocab_size, (batch_size, text_len), generator=g)
    ids[:, 3] = config.image_token_id
    labels = torch.full_like(ids, -100)
    labels[:, text_len // 2:] = ids[:, text_len // 2:]
    mask = torch.ones_like(ids)
    for b in range(batch_size):
        end = text_len - b
        if config.coord_token_id >= 0:
            ids[b, 5] = config.coord_token_id
        if grounding[b]:
            ids[b, end - 2] = config.ground_token_id
            labels[b, :] = -100
            labels[b, end - 2] = config.ground_token_id
        ids[b, end:], labels[b, end:], mask[b, end:] = 0, -100, 0
    c = config.latent_channels
    positive = torch.zeros(batch_size, 1, n_objects, dtype=torch.bool)  # one `<ground>` query per sample
    positive[:, 0, 0] = True
    return {
        "input_ids": ids, "attention_mask": mask, "labels": labels,
        "vision": torch.randn(batch_size, v, p * p, config.vision_dim, generator=g),
        "voxels": torch.randint(0, 100, (batch_size, v, pg, pg, 3), generator=g).to(torch.int16),
        "view_mean": torch.randn(batch_size, v, c, p, p, generator=g),
        "view_logvar": torch.randn(batch_size, v, c, p, p, generator=g) - 3,
        "bev_mean": torch.randn(batch_size, c, 2 * config.bev_grid, 2 * config.bev_grid, generator=g),
        "bev_logvar": torch.randn(batch_size, c, 2 * config.bev_grid, 2 * config.bev_grid, generator=g) - 3,
        "bev_valid": torch.rand(batch_size, config.bev_grid, config.bev_grid, generator=g) > 0.3,
        "grounding": torch.tensor(grounding),
        "object_boxes": torch.rand(batch_size, n_objects, 6, generator=g) * 6 - 3,
        "object_membership": torch.rand(batch_size, n_objects, v, p, p, generator=g) > 0.9,
        "object_valid": torch.ones(batch_size, n_objects, dtype=torch.bool),
        "object_positive": positive,
        "box_center": torch.rand(batch_size, 1, 3, generator=g) * 6 - 3,
        "has_box": torch.ones(batch_size, 1, dtype=torch.bool),
    }
