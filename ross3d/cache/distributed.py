"""torchrun support for caching: process group set-up (nccl on GPU, gloo on CPU), the rank's share of the scenes
(disjoint, round robin), barriers, and per-rank failure files merged by rank 0. A plain process is rank 0 of 1."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from ross3d.cache.encoders import resolve_device

FAILURES = ".failed-rank{}.json"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def session(device: str | None) -> Iterator[torch.device]:
    """The device of this rank (cuda:LOCAL_RANK under torchrun); a process group while world size > 1."""
    dev = resolve_device(device)
    if dev.type == "cuda" and world_size() > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    started = False
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    try:
        yield dev
    finally:
        if started:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def my_share(items: list) -> list:
    return items[rank()::world_size()]


def record_failures(cache_dir: Path, failed: dict[str, str]) -> None:
    (Path(cache_dir) / FAILURES.format(rank())).write_text(json.dumps(failed))


def collect_failures(cache_dir: Path) -> dict[str, str]:
    """Merge and remove the per-rank failure files (rank 0, after the final barrier)."""
    out: dict[str, str] = {}
    for r in range(world_size()):
        path = Path(cache_dir) / FAILURES.format(r)
        if path.is_file():
            out.update(json.loads(path.read_text()))
            path.unlink()
    return out
