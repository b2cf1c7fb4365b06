"""ZeRO-3 awareness for code that writes parameters: gathering partitioned parameters for modification (rank 0
writes, the other ranks receive its values when the context ends) and their full shapes. Both are no-ops for
ordinary parameters, so model code runs the same with or without DeepSpeed partitioning."""

from __future__ import annotations

import contextlib

import torch


def gathered(params: list[torch.nn.Parameter]):
    """Context in which ZeRO-3-partitioned `params` are whole; rank 0's writes are kept."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
    return contextlib.nullcontext()


def full_shape(param: torch.nn.Parameter) -> torch.Size:
    """The parameter's shape, also when ZeRO-3 has partitioned it (then `.shape` is empty)."""
    return getattr(param, "ds_shape", param.shape)
