"""Resumable checkpoints and the final export.

`Checkpointer.maybe_save(engine, step)` decides by itself when to save (every `save_every` optimizer steps and at
the last step); a checkpoint is DeepSpeed's engine state (`save_checkpoint`, all ranks) plus, per rank, the trainer
state: optimizer step, epoch, RNG states of torch, numpy and python. The data order is a pure function of
(seed, epoch, step), so resuming replays the plan from the saved step. The resolved config sits beside it.
`export_model` writes the HF-style folder eval loads: model.safetensors + config.json + tokenizer.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ross3d.errors import InputError

LATEST = "latest_step"


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Saves into OUTPUT_DIR/checkpoints/step_<n>/ and keeps the newest `keep`."""

    def __init__(self, output_dir: str | Path, every: int, keep: int, rank: int, config: dict):
        self.root = Path(output_dir) / "checkpoints"
        self.every, self.keep, self.rank, self.config = every, keep, rank, config

    def should_save(self, step: int, last_step: int) -> bool:
        return step == last_step or (self.every > 0 and step % self.every == 0)

    def maybe_save(self, engine, step: int, epoch: int, last_step: int) -> bool:
        if not self.should_save(step, last_step):
            return False
        tag = f"step_{step}"
        engine.save_checkpoint(str(self.root), tag=tag, client_state={"step": step, "epoch": epoch},
                               save_latest=False)
        torch.save({"step": step, "epoch": epoch, "rng": rng_state()}, self.root / tag / f"trainer_rank{self.rank}.pt")
        torch.distributed.barrier()
        if self.rank == 0:
            (self.root / tag / "config.json").write_text(json.dumps(self.config, indent=2))
            (self.root / LATEST).write_text(tag)
            self._prune()
        return True

    def _prune(self) -> None:
        tags = sorted((p for p in self.root.glob("step_*") if p.is_dir()), key=lambda p: int(p.name[5:]))
        for old in tags[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> str | None:
        marker = self.root / LATEST
        return marker.read_text().strip() if marker.exists() else None

    def load(self, engine) -> tuple[int, int]:
        """Restore engine, RNG and counters from the latest checkpoint: -> (step, epoch)."""
        tag = self.latest()
        if tag is None:
            raise InputError(self.root, "no checkpoint to resume from (run without --resume)")
        path, _ = engine.load_checkpoint(str(self.root), tag=tag)
        if path is None:
            raise InputError(self.root / tag, "DeepSpeed could not load this checkpoint")
        state = torch.load(self.root / tag / f"trainer_rank{self.rank}.pt", weights_only=False)
        set_rng_state(state["rng"])
        return state["step"], state["epoch"]


def export_model(engine, tokenizer, folder: str | Path, is_main: bool) -> Path:
    """The full model (gathered under ZeRO-3, all ranks take part) as safetensors + config + tokenizer."""
    from ross3d.model.checkpoint import save_model

    model = engine.module
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if is_main:
                save_model(model, folder, tokenizer)
    elif is_main:
        save_model(model, folder, tokenizer)
    torch.distributed.barrier()
    return Path(folder)
