"""Training data from PREP_DIR/samples.parquet and CACHE_DIR only: tokenised samples, the check that their scenes are
cached, and the loader that replays an epoch plan from any step (batch assembly itself: ross3d/batches.py).

No image is decoded and no encoder is loaded here: every visual input is a cached array. A micro-batch is one
loader item (the dataset's `__getitem__` takes the micro-batch's sample indices), so workers and pinned-memory
prefetch work on whole micro-batches and a scene block read once serves every sample of that scene that follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ross3d.batches import SceneCache, TextSample, collate, encode_rows
from ross3d.chat import ChatEncoder
from ross3d.errors import InputError, Ross3DError
from ross3d.prep.qa.schema import Sample
from ross3d.train.config import DataConfig
from ross3d.train.labelled import training_rows
from ross3d.train.packing import pack_rows
from ross3d.train.sampler import Lanes, SceneOrder, plan_epoch, rank_micro_batches


def encode_samples(rows: Sequence[Sample], config: DataConfig, encoder: ChatEncoder,
                   seed: int = 0, epoch: int = 0) -> list[TextSample]:
    """samples.parquet rows tokenised as the run's data config says: packed into conversations of up to
    `config.pack_turns` turns, the tasks of `config.task_repeat` listed that many times (ross3d.train.packing,
    seeded by the run's `seed` and the epoch), then
    ross3d.batches.encode_rows."""
    return [encode_rows(pack, encoder, config.spatial_instruction)
            for pack in pack_rows(rows, config.pack_turns, seed, epoch, config.task_repeat)]


@dataclass(frozen=True)
class EpochSamples:
    """The samples of every packing, concatenated: epoch e trains on `samples[slice(*spans[e % len(spans)])]`."""

    samples: list[TextSample]
    spans: list[tuple[int, int]]

    def span(self, epoch: int) -> tuple[int, int]:
        return self.spans[epoch % len(self.spans)]


def encode_epochs(rows: Sequence[Sample], config: DataConfig, encoder: ChatEncoder, seed: int,
                  epochs: int) -> EpochSamples:
    """One packing per epoch for `config.pack_turns` > 1 (a run past `epochs`, by `max_steps`, cycles through them);
    one packing for every epoch without packing."""
    samples: list[TextSample] = []
    spans = []
    for epoch in range(max(1, epochs) if config.pack_turns > 1 else 1):
        packed = encode_samples(rows, config, encoder, seed, epoch)
        spans.append((len(samples), len(samples) + len(packed)))
        samples += packed
    return EpochSamples(samples, spans)


def epoch_plan(packed: EpochSamples, epoch: int, global_batch: int, seed: int, config: DataConfig,
               lanes: Lanes) -> np.ndarray:
    """(n_steps, global_batch) indices into `packed.samples` of one epoch: ross3d.train.sampler.plan_epoch over that
    epoch's packing."""
    lo, hi = packed.span(epoch)
    part = packed.samples[lo:hi]
    scene_order = None if config.order != "scene_local" else SceneOrder(
        [s.scene_id for s in part], config.run_length, config.scene_buffer, lanes)
    return lo + plan_epoch([s.task for s in part], [len(s.input_ids) for s in part], global_batch, seed, epoch,
                           config.grouping, scene_order)


def load_text_samples(config: DataConfig, encoder: ChatEncoder, seed: int = 0) -> list[TextSample]:
    """The configured split and tasks of samples.parquet (within the labelled fraction), tokenised."""
    return encode_samples(training_rows(config)[0], config, encoder, seed)


def check_cache(config: DataConfig, samples: Sequence[TextSample]) -> None:
    """Before step 1: the cache is complete, was built from `config.prep_dir`, and holds every sample's scene."""
    from pathlib import Path

    from ross3d.cache.reader import CacheReader

    reader = CacheReader(config.cache_dir)
    reader.check_provenance(config.prep_dir)
    missing = reader.missing({s.scene_id for s in samples}, config.strategy)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(Path(config.cache_dir), f"{len(missing)} scenes of the {config.split!r} samples are not "
                                                 f"cached with strategy {config.strategy!r}: {shown}")


class MicroBatchDataset(torch.utils.data.Dataset):
    """Item = a micro-batch given as its sample indices; returns the collated batch."""

    def __init__(self, samples: list[TextSample], config: DataConfig, pad_id: int):
        self.samples, self.pad_id = samples, pad_id
        self.scenes = SceneCache(config.cache_dir, config.strategy, config.scene_cache,
                                 [s.scene_id for s in samples])

    def __getitem__(self, indices) -> dict | Ross3DError:
        """The collated batch; a bad cached scene is returned as its error (a worker's raise would reach the
        training process as a traceback, not as the one-line error `micro_batches` raises)."""
        picked = [self.samples[int(i)] for i in indices]
        try:
            return collate(picked, [self.scenes.get(s.scene_id) for s in picked], self.pad_id)
        except Ross3DError as err:
            return err


def remaining_steps(plan: Callable[[int], np.ndarray], start: int, total: int) -> list[tuple[int, np.ndarray]]:
    """(epoch, sample indices) of optimizer steps start+1 .. total, continuing through epochs' plans."""
    out: list[tuple[int, np.ndarray]] = []
    epoch = 0
    while len(out) < total:
        rows = plan(epoch)
        out += [(epoch, row) for row in rows[:total - len(out)]]
        epoch += 1
    return out[start:]


def micro_batch_order(steps: Sequence[np.ndarray], rank: int, world_size: int, micro_batch: int) -> list:
    """This rank's micro-batches (as index arrays) of the given steps, in training order."""
    return [mb for step in steps for mb in rank_micro_batches(step, rank, world_size, micro_batch)]


def micro_batches(dataset: MicroBatchDataset, order: list, config: DataConfig, on_gpu: bool) -> Iterator[dict]:
    """Iterate the given micro-batches with worker processes and (on GPU) pinned-memory prefetch."""
    workers = config.num_workers
    loader = torch.utils.data.DataLoader(
        dataset, sampler=order, batch_size=None, num_workers=workers, pin_memory=on_gpu and config.pin_memory,
        prefetch_factor=config.prefetch_factor if workers else None, persistent_workers=False,
        multiprocessing_context="fork" if workers else None)
    for batch in loader:
        if isinstance(batch, Ross3DError):
            raise batch
        yield batch
