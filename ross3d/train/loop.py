"""`train(config)`: the training loop, readable top to bottom. Components decide the details: the sampler the data
order, the checkpointer when to save, the metrics logger when to log, the engine module the DeepSpeed setup.

Every optimizer step runs `grad_accum` micro-batches on each rank. The model's random draws (view masks,
diffusion timesteps and noise, posterior samples) come from a generator seeded by (seed, rank, step, micro-step),
torch's global generators (LoRA's dropout) are reseeded from the same key,
and the data order is a pure function of (seed, epoch), so a resumed run continues the loss trajectory exactly.
The masking schedule reads the optimizer step, not the micro-step.

Rank 0 holds the run folder's lock for the whole run; a fresh run refuses a folder with a previous run's outputs
(unless `overwrite`), a resumed run refuses a config that differs from its checkpoint's (ross3d.train.run_folder),
and a non-finite loss or gradient norm stops the run before that step is saved, so the latest checkpoint is good.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ross3d.config_tree import to_dict
from ross3d.errors import ConfigError, InputError, TrainingError
from ross3d.train.config import TrainConfig

log = logging.getLogger(__name__)
# torch's global generators are reseeded from (seed, rank, step, micro-step, GLOBAL_STREAM) before every micro-step:
# draws outside the model's own generator (LoRA's dropout) then do not depend on what ran before (a resumed run's
# loader draws a seed from it at start)
GLOBAL_STREAM = 1


@dataclass
class TrainResult:
    steps: int
    first_loss: float | None
    last_loss: float | None
    output_dir: Path
    export_dir: Path


def train(config: TrainConfig, resume: bool = False, on_record: Callable[[dict], None] | None = None,
          overwrite: bool = False, allow_changes: tuple[str, ...] = ()) -> TrainResult:
    """Run (or resume) a training run as described by `config`; every rank calls this. `overwrite` replaces a
    previous run in the folder; `allow_changes` names config keys a resumed run may change."""
    from ross3d.locking import exclusive_lock
    from ross3d.train.engine import init_distributed

    dist = init_distributed()
    out = Path(config.output_dir)
    with exclusive_lock(out, "training run") if dist.is_main else contextlib.nullcontext():
        _claim_folder(config, dist, resume, overwrite, allow_changes)
        return _run(config, dist, resume, on_record)


def _claim_folder(config: TrainConfig, dist, resume: bool, overwrite: bool, allow_changes) -> None:
    from ross3d.train.checkpoint import Checkpointer
    from ross3d.train.run_folder import check_resume_config, claim_fresh

    out = Path(config.output_dir)
    if resume:
        checkpoints = Checkpointer(out, 0, 1, dist.rank, {})
        tag = checkpoints.latest()
        if tag is None:
            raise InputError(checkpoints.root, "no checkpoint to resume from (run without --resume)")
        saved = checkpoints.root / tag / "config.json"
        try:
            check_resume_config(json.loads(saved.read_text()), to_dict(config), allow_changes, saved)
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(saved, f"cannot read the checkpoint's config ({err})") from None
    elif dist.is_main:
        claim_fresh(out, overwrite)
    if dist.world_size > 1:
        torch.distributed.barrier()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _run(config: TrainConfig, dist, resume: bool, on_record) -> TrainResult:
    import yaml

    from ross3d.chat import ChatEncoder
    from ross3d.model.model_card import write_model_card
    from ross3d.train.checkpoint import Checkpointer, export_model
    from ross3d.train.data import (MicroBatchDataset, check_cache, encode_epochs, epoch_plan, micro_batch_order,
                                   micro_batches, remaining_steps)
    from ross3d.train.engine import build_engine, deepspeed_config
    from ross3d.train.labelled import training_rows, write_split
    from ross3d.train.metrics import LOSS_KEYS, MetricsLogger
    from ross3d.train.model_setup import build_model
    from ross3d.train.optimizer import optimizer_class
    from ross3d.train.sampler import Lanes

    # ---- setup: run dir, model, data
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = to_dict(config)
    if dist.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    ds_config, ds_changes = deepspeed_config(config, dist.world_size)  # a conflicting user file fails here, early
    if dist.is_main:
        for change in ds_changes:
            log.info("deepspeed_config %s: %s", config.deepspeed_config, change)
    optimizer_class(config.optim, ds_config)  # no GPU or package for the optimizer: fail before the model loads
    model, tokenizer = build_model(config, out / "tokenizer", dist.is_main, reuse_tokenizer=resume)
    rows, labelled_split = training_rows(config.data)
    if labelled_split is not None and dist.is_main:
        write_split(out, labelled_split)
    packed = encode_epochs(rows, config.data, ChatEncoder(tokenizer, model.config.image_token_id), config.seed,
                           config.epochs)
    samples = packed.samples
    check_cache(config.data, samples)
    if config.model.language_warmup is not None and not resume:  # a resumed run loads the warmed-up weights
        _warm_up_language(config, model, tokenizer, samples[slice(*packed.span(0))], dist, out)
    adapter = _prepare_parts(config, model, dist)
    tasks = [s.task for s in samples]
    global_batch = config.micro_batch * config.grad_accum * dist.world_size
    lanes = Lanes(dist.world_size, config.micro_batch, config.data.num_workers)

    def plan(epoch: int) -> np.ndarray:
        return epoch_plan(packed, epoch, global_batch, config.seed, config.data, lanes)

    steps_per_epoch = len(plan(0))
    if steps_per_epoch == 0:
        raise ConfigError(f"micro_batch: {len(samples)} samples do not fill one global batch of {global_batch} "
                          f"(micro_batch x grad_accum x world size) in any task group")
    total = config.max_steps or steps_per_epoch * config.epochs
    engine = build_engine(model, config, ds_config, total)
    dataset = MicroBatchDataset(samples, config.data, tokenizer.pad_token_id)
    checkpointer = Checkpointer(out, config.save_every, config.keep_checkpoints, dist.rank, resolved)
    step = 0
    _seed_everything(config.seed + dist.rank)
    if resume:
        step, _ = checkpointer.load(engine)
        log.info("resumed from step %d", step)
    metrics = MetricsLogger(out, config.log_every, dist.is_main, config.tensorboard, config.wandb_project,
                            resolved, on_record, resume_step=step if resume else None)
    losses: list[float] = []
    on_gpu = dist.device.type == "cuda"
    preview = _preview(config, model, tokenizer, dist)

    # ---- the loop: one iteration per optimizer step; one loader (workers, prefetch) spans the remaining steps
    steps = remaining_steps(plan, step, total)
    batches = micro_batches(dataset, micro_batch_order([row for _, row in steps], dist.rank, dist.world_size,
                                                       config.micro_batch), config.data, on_gpu)
    for epoch, indices in steps:
        start, wait = time.perf_counter(), 0.0
        lr = engine.get_lr()[0]
        sums = torch.zeros(len(LOSS_KEYS), device=dist.device)
        for micro in range(config.grad_accum):
            t = time.perf_counter()
            batch = _move(next(batches), dist.device)
            wait += time.perf_counter() - t
            torch.manual_seed(_micro_seed(config.seed, dist.rank, step, micro, GLOBAL_STREAM))  # LoRA dropout
            result = engine(batch, global_step=step, generator=_generator(dist.device, config.seed, dist.rank,
                                                                          step, micro))
            engine.backward(result["loss"])
            engine.step()
            sums += torch.stack([result[k].detach().float() for k in LOSS_KEYS])
        step += 1
        means = _rank_mean(sums / config.grad_accum, dist.world_size)
        norm = _grad_norm(engine)
        _stop_if_not_finite(step, means[0], norm, lr, checkpointer.latest())
        seconds = time.perf_counter() - start
        losses.append(means[0])
        if metrics.should_log(step, total):
            metrics.log({"step": step, **dict(zip(LOSS_KEYS, means)), "lr": lr, "grad_norm": norm,
                         "samples_per_s": global_batch / seconds, "data_wait_fraction": wait / seconds,
                         "epoch": epoch, "task": "+".join(sorted({tasks[i] for i in indices}))})
        if preview is not None:
            preview.maybe_write(engine.module, step)
        checkpointer.maybe_save(engine, step, epoch, total)

    # ---- the end: HF-style export for eval (LoRA merged into it), loss curve
    model = engine.module  # the export records how far it was trained (visualize labels pictures with it)
    model.config = model.config.replace(extra={**model.config.extra, "step": step})
    adapter_dir = None
    if adapter is not None:
        from ross3d.train.lora import finish_lora

        adapter_dir = finish_lora(model, adapter, tokenizer, out / "checkpoints", config.model.lora.export,
                                  config.model.train_parts, dist.is_main)
    if adapter is None or config.model.lora.export != "adapter":
        export_dir = export_model(engine, tokenizer, out / "checkpoints" / "final", dist.is_main)
        if dist.is_main:  # the card lists the metrics of an evaluation into OUTPUT_DIR/results (make eval, the demo)
            write_model_card(export_dir, model.config, out.name, resolved, out / "results")
    else:
        export_dir = adapter_dir
    metrics.close()
    return TrainResult(step, losses[0] if losses else None, losses[-1] if losses else None, out, export_dir)


def _prepare_parts(config: TrainConfig, model, dist):
    """Apply `model.train_parts`, LoRA and gradient checkpointing to `model`; returns peft's LoRA wrapper of
    model.llm or None."""
    from ross3d.train.lora import add_lora
    from ross3d.train.parts import freeze_parts, trainable_parameters

    freeze_parts(model, config.model.train_parts)
    adapter = add_lora(model, config.model.lora, config.seed, config.model.init) if config.model.lora else None
    if dist.is_main:
        log.info("trainable parameters: %d of %d", trainable_parameters(model),
                 sum(p.numel() for p in model.parameters()))
    if config.model.gradient_checkpointing:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return adapter


def _warm_up_language(config: TrainConfig, model, tokenizer, samples, dist, out: Path) -> None:
    """The fresh LM's next-token steps on the training texts (`model.language_warmup`), on every rank alike."""
    from ross3d.train.language_warmup import object_labels, warm_up_language, warm_up_texts

    warmup = config.model.language_warmup
    model.to(dist.device)
    start = time.perf_counter()
    labels = object_labels(config.data.prep_dir) if warmup.ground_labels else None
    texts = warm_up_texts(samples, model.config.image_token_id, model.config.ground_token_id, labels, tokenizer)
    losses = warm_up_language(model.llm, texts, tokenizer.pad_token_id,
                              warmup.steps, warmup.batch, warmup.lr, config.optim.grad_clip, config.seed,
                              dist.device, out if dist.is_main else None)
    if dist.is_main:
        log.info("language warm-up: %d steps of %d texts, lm loss %.4f -> %.4f in %.0f s", warmup.steps,
                 warmup.batch, losses[0], losses[-1], time.perf_counter() - start)


def _preview(config: TrainConfig, model, tokenizer, dist):
    """The `visualize_every` picture writer (every rank builds it: all ranks run the reconstruction together)."""
    if not config.visualize_every:
        return None
    from ross3d.visualize.preview import TrainingPreview

    return TrainingPreview(config, model.config, tokenizer, dist.device, dist.is_main)


def _micro_seed(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1)


def _generator(device: torch.device, *key: int) -> torch.Generator:
    """The model's random stream for one micro-step, a pure function of (seed, rank, step, micro-step)."""
    return torch.Generator(device).manual_seed(_micro_seed(*key))


def _rank_mean(values: torch.Tensor, world_size: int) -> list[float]:
    if world_size > 1:
        torch.distributed.all_reduce(values)
        values = values / world_size
    return values.tolist()


def _stop_if_not_finite(step: int, loss: float, norm: float | None, lr: float, last_good: str | None) -> None:
    """A NaN/inf loss or gradient norm ends the run before the step is saved (the latest checkpoint stays good)."""
    bad = [f"{name} {value}" for name, value in (("loss", loss), ("gradient norm", norm))
           if value is not None and not math.isfinite(value)]
    if bad:
        kept = f"checkpoints/{last_good} is the last good checkpoint" if last_good else "no checkpoint was saved"
        raise TrainingError(f"step {step}: non-finite {' and '.join(bad)} (lr {lr:.3g}); training stopped, {kept}")


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    return None if norm is None else float(norm)
