"""ZeRO-3 pieces the trainer hands to model code, so the model package stays plain PyTorch + transformers:
`gathered_for_update(params)` gathers partitioned parameters for modification (rank 0 writes, DeepSpeed
re-partitions on exit) and is a no-op context for ordinary parameters."""

from __future__ import annotations

import contextlib

import torch


def gathered_for_update(params: list[torch.nn.Parameter]):
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
    return contextlib.nullcontext()
