"""Resumable checkpoints and the final export.

`Checkpointer.maybe_save(engine, step)` decides by itself when to save (every `save_every` optimizer steps and at
the last step); a checkpoint is DeepSpeed's engine state (`save_checkpoint`, all ranks) plus, per rank, the trainer
state as JSON (`trainer_rank<r>.json`: optimizer step, epoch, RNG states of torch, numpy and python). The data order
is a pure function of (seed, epoch, step), so resuming replays the plan from the saved step. The resolved config
sits beside it. Nothing is unpickled on resume: the trainer state is JSON, and DeepSpeed's `.pt` files are read
with `torch.load(weights_only=True)` (tensors, containers and the few DeepSpeed types named in `SAFE_GLOBALS`).
`export_model` writes the HF-style folder eval loads: model.safetensors + config.json + tokenizer.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ross3d.errors import InputError

LATEST = "latest_step"


def _bytes(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict:
    """The RNG states of torch (CPU and CUDA), numpy and python as plain JSON data."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": _bytes(torch.get_rng_state()),
            "cuda": [_bytes(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(_tensor(state["torch"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all([_tensor(s) for s in state["cuda"]])


class WeightsOnlyLoads:
    """Wraps DeepSpeed's checkpoint engine so that every file it loads is unpickled with `weights_only=True`
    (DeepSpeed's own engine passes `weights_only=False`, which runs whatever code a crafted file holds)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def load(self, path, map_location=None):
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)


def safe_globals() -> list:
    """The non-tensor types DeepSpeed's ZeRO-2/3 checkpoints hold, beside tensors and plain containers (found with
    torch.serialization.get_unsafe_globals_in_checkpoint on this trainer's checkpoints)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


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
        (self.root / tag / f"trainer_rank{self.rank}.json").write_text(
            json.dumps({"step": step, "epoch": epoch, "rng": rng_state()}))
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
        state_path = self.root / tag / f"trainer_rank{self.rank}.json"
        try:
            state = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(state_path, f"cannot read the trainer state ({err})") from None
        engine.checkpoint_engine = WeightsOnlyLoads(engine.checkpoint_engine)
        try:
            path, _ = engine.load_checkpoint(str(self.root), tag=tag)
        except pickle.UnpicklingError as err:
            raise InputError(self.root / tag, f"refused to load: {' '.join(str(err).split())[:300]}") from None
        if path is None:
            raise InputError(self.root / tag, "DeepSpeed could not load this checkpoint")
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
