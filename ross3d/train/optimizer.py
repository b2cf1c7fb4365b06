"""The loop's client optimizer (`optim.name`): torch AdamW, or bitsandbytes' 8-bit AdamW (`adamw_8bit`: moments
stored in 8 bits, 2 bytes per trainable parameter instead of 8; CUDA only, installed with the `bnb` extra).

`optimizer_class` is asked before the model is built, so a missing GPU or package fails in a second, not after a
7B load. An optimizer offloaded to the CPU (deepspeed_config's `offload_optimizer`) steps CPU tensors, which the
8-bit optimizer cannot.
"""

from __future__ import annotations

import torch

from ross3d.errors import ConfigError
from ross3d.train.config import PART_LR_FIELDS, OptimConfig


def optimizer_class(optim: OptimConfig, ds_config: dict) -> type[torch.optim.Optimizer]:
    """The optimizer class for `optim.name`; ConfigError when this machine or `ds_config` cannot run it."""
    if optim.name == "adamw":
        return torch.optim.AdamW
    if not torch.cuda.is_available():
        raise ConfigError("optim.name: adamw_8bit runs on CUDA GPUs only (bitsandbytes); use adamw on this machine")
    offload = ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    if offload not in ("none", None):
        raise ConfigError(f"optim.name: adamw_8bit cannot step an optimizer offloaded to {offload} "
                          "(deepspeed_config's offload_optimizer); use adamw with offload")
    try:
        import bitsandbytes
    except ImportError:
        raise ConfigError("optim.name: adamw_8bit needs bitsandbytes (pip install 'ross3d[bnb]')") from None
    return bitsandbytes.optim.AdamW8bit


def part_lrs(optim: OptimConfig) -> dict[str, float]:
    """Parameter-name prefix -> the peak lr of that part, for the parts given their own lr."""
    lrs = {prefix: getattr(optim, key) for prefix, key in PART_LR_FIELDS.items()}
    return {prefix: lr for prefix, lr in lrs.items() if lr is not None}


def param_groups(params: list[tuple[str, torch.nn.Parameter]], optim: OptimConfig) -> list[dict]:
    """Groups of the trainable `(name, parameter)` pairs: weight decay on matrices, none on biases and norms (the
    original's two groups); the denoiser at `optim.denoiser_lr` and the grounding head at `optim.ground_lr` when
    set, everything else at `optim.lr`."""
    own = part_lrs(optim)
    groups: dict[tuple[float, float], list] = {}
    for name, param in params:
        lr = next((lr for prefix, lr in own.items() if name.startswith(prefix)), optim.lr)
        key = (lr, optim.weight_decay if param.ndim >= 2 else 0.0)
        groups.setdefault(key, []).append(param)
    return [{"params": group, "lr": lr, "weight_decay": decay} for (lr, decay), group in groups.items()]


def build_optimizer(params: list[tuple[str, torch.nn.Parameter]], optim: OptimConfig,
                    ds_config: dict) -> torch.optim.Optimizer:
    """`optim.name` over the trainable `(name, parameter)` pairs, grouped by `param_groups`."""
    return optimizer_class(optim, ds_config)(param_groups(params, optim), lr=optim.lr, betas=tuple(optim.betas),
                                             eps=optim.eps)
