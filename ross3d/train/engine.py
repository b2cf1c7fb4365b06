"""DeepSpeed around the model: process-group setup (single process, `deepspeed` or `torchrun` launchers, one or
many nodes), the ZeRO config, the client optimizer (ross3d.train.optimizer) and the warmup + cosine schedule.

On a machine without CUDA the CPU accelerator, the gloo backend and fp32 are used (docs/platform.md, "DeepSpeed on
CPU"); on GPU nccl and bf16 unless the config says fp32.

`deepspeed_config: PATH` merges a user's DeepSpeed JSON (offload, stage-3 knobs, e.g. the original's zero3.json)
into the computed config. Keys the loop sets from the train config (batch sizes, accumulation, clipping, ZeRO
stage, precision) must agree with it or be "auto", and the loop brings its own optimizer and schedule, so
`optimizer` and `scheduler` sections are refused; any other "auto" leaves the key to DeepSpeed's default. Every
change to the computed config is returned, for the run to print.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from ross3d.errors import ConfigError, InputError
from ross3d.jsonfile import read_json
from ross3d.train.config import TrainConfig

# DeepSpeed keys the loop computes, with the train config key that sets each
LOOP_KEYS = {
    "train_micro_batch_size_per_gpu": "micro_batch",
    "gradient_accumulation_steps": "grad_accum",
    "train_batch_size": "micro_batch x grad_accum x world size",
    "gradient_clipping": "optim.grad_clip",
    "zero_optimization.stage": "zero_stage",
    "bf16.enabled": "precision",
    "fp16.enabled": "precision (the loop trains in bf16 or fp32)",
}
# sections the loop provides itself (its optimizer and the warmup-cosine LambdaLR, passed to deepspeed.initialize)
LOOP_SECTIONS = {"optimizer": "optim.*", "scheduler": "optim.warmup_ratio"}


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> DistInfo:
    """Join (or, run alone, create a one-process) process group; returns this rank's place and device.

    The group lives until the process exits (DeepSpeed caches groups module-wide, so a later run in the same
    process, e.g. a test, reuses it); the exit handler runs a barrier before destroying it, which ZeRO-3 needs
    (docs/platform.md)."""
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        if "WORLD_SIZE" not in os.environ:  # plain `ross3d train`: a group of one
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(_free_port()))
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        atexit.register(_close_distributed)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, device)


def _close_distributed() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def use_bf16(config: TrainConfig) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and torch.cuda.is_available())


def computed_deepspeed_config(config: TrainConfig, world_size: int) -> dict:
    """The DeepSpeed config the loop derives from the train config alone."""
    zero = {"stage": config.zero_stage, "overlap_comm": torch.cuda.is_available(), "contiguous_gradients": True}
    if config.zero_stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True, sub_group_size=int(1e9))
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch,
        "gradient_accumulation_steps": config.grad_accum,
        "train_batch_size": config.micro_batch * config.grad_accum * world_size,
        "gradient_clipping": config.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": use_bf16(config)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def _set(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value


def merge_deepspeed_config(computed: dict, user: dict, source: str) -> tuple[dict, list[str]]:
    """`computed` with `user`'s keys merged in: -> (config, ["key: old -> new", ...]). A user value that conflicts
    with the loop raises ConfigError naming the key and the train config key to set instead."""
    ours = _leaves(computed)
    merged = json.loads(json.dumps(computed))
    changes, conflicts = [], []
    for section, instead in LOOP_SECTIONS.items():
        if section in user:
            conflicts.append(f"{section}: the loop provides its own (set {instead})")
    for key, value in _leaves({k: v for k, v in user.items() if k not in LOOP_SECTIONS}).items():
        if key in LOOP_KEYS or (key in ours and value == "auto"):  # the loop's value stays
            if value != "auto" and value != ours.get(key, False):
                conflicts.append(f"{key} = {value!r}, the loop's is {ours.get(key, False)!r} (set {LOOP_KEYS[key]})")
            continue
        if value == "auto":
            changes.append(f"{key}: auto -> DeepSpeed's default")
            continue
        if ours.get(key, "absent") != value:
            changes.append(f"{key}: {ours.get(key, 'absent')} -> {value}")
            _set(merged, key, value)
    if conflicts:
        raise ConfigError(f"deepspeed_config: {source} conflicts with the training loop: " + "; ".join(conflicts))
    offload = merged.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    if offload not in ("none", None) and "zero_force_ds_cpu_optimizer" not in user:
        merged["zero_force_ds_cpu_optimizer"] = False  # the client optimizer is torch AdamW, not DeepSpeedCPUAdam
        changes.append("zero_force_ds_cpu_optimizer: absent -> False (optimizer offload with the loop's torch AdamW)")
    return merged, changes


def deepspeed_config(config: TrainConfig, world_size: int) -> tuple[dict, list[str]]:
    """The run's DeepSpeed config and the changes `config.deepspeed_config` made to the computed one."""
    computed = computed_deepspeed_config(config, world_size)
    if not config.deepspeed_config:
        return computed, []
    path = Path(config.deepspeed_config)
    user = read_json(path, "train option deepspeed_config")
    if not isinstance(user, dict):
        raise InputError(path, "not a DeepSpeed config (a JSON object)")
    return merge_deepspeed_config(computed, user, str(path))


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """The HF schedule the original uses: linear warmup from 0 over ceil(ratio * total) steps, then
    cosine to 0 (transformers get_cosine_schedule_with_warmup)."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def build_engine(model, config: TrainConfig, ds_config: dict, total_steps: int):
    """deepspeed.initialize with `ds_config`, the optimizer over the trainable parameters and the warmup-cosine
    LambdaLR."""
    import deepspeed

    from ross3d.train.optimizer import build_optimizer

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(params, config.optim, ds_config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.optim.warmup_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                           config=ds_config)
    return engine
