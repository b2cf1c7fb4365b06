"""`model.train_parts`: which of the model's top-level parts train (the original's `mm_tunable_parts`,
docs/original-model.md 8.4). A part left out is frozen (no gradient, no optimizer state); with `model.lora` the
LLM's own weights stay frozen too and only its adapters train (ross3d.train.lora)."""

from __future__ import annotations

from torch import nn

from ross3d.train.config import TRAIN_PARTS


def freeze_parts(model: nn.Module, parts: list[str]) -> None:
    """Let exactly the parameters of the named top-level parts train."""
    for name, param in model.named_parameters():
        part = name.split(".")[0]
        if part not in TRAIN_PARTS:
            raise ValueError(f"parameter {name} belongs to no part of TRAIN_PARTS")
        param.requires_grad_(part in parts)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
