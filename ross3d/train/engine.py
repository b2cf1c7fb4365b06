"""DeepSpeed around the model: process-group setup (single process, `deepspeed` or `torchrun` launchers, one or
many nodes), the ZeRO config, torch AdamW as the client optimizer and the warmup + cosine schedule.

On a machine without CUDA the CPU accelerator, the gloo backend and fp32 are used (docs/platform.md, "DeepSpeed on
CPU"); on GPU nccl and bf16 unless the config says fp32.
"""

from __future__ import annotations

import atexit
import math
import os
import socket
from dataclasses import dataclass

import torch

from ross3d.train.config import TrainConfig


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


def deepspeed_config(config: TrainConfig, world_size: int) -> dict:
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


def build_engine(model, config: TrainConfig, world_size: int, total_steps: int):
    """deepspeed.initialize with AdamW (no decay on biases and norms) and the warmup-cosine LambdaLR."""
    import deepspeed

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in params if p.ndim < 2]
    decay = [p for n, p in params if p.ndim >= 2]
    groups = [{"params": decay, "weight_decay": config.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.optim.lr, betas=tuple(config.optim.betas), eps=config.optim.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.optim.warmup_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                           config=deepspeed_config(config, world_size))
    return engine
