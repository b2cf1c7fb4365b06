"""Epoch plans: which samples form each optimizer step, and which of them each rank trains on.

`task` grouping follows the original (docs/original-model.md section 9): per task group a seeded permutation cut into
chunks of one global batch, each chunk sorted by text length (descending), all chunks shuffled together, so every
optimizer step holds a single task. Unlike the original, only the incomplete remainder of each group is dropped
(the original also dropped the last full chunk). `shuffle` is a plain seeded permutation. A plan is a pure function
of (seed, epoch), so a resumed run replays exactly the same steps.

`SceneOrder` (the `scene_local` order, docs/scene-local.md) keeps the grouping but draws each group's samples in
runs of one scene: the scenes in a seeded order pass through a buffer of a few open scenes, each draw takes the
next `run_length` samples of a random open scene. The runs are laid out lane by lane, a lane being one rank's
micro-batches that one loader worker reads, so a worker reads a scene block once per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# The original's task ids: QA tasks share a group, captioning is one, grounding tasks share one; vision-only scenes
# (reconstruction losses alone, docs/vision-only.md) are a group of their own.
TASK_GROUP = {"scanqa": 0, "sqa3d": 0, "scan2cap": 1, "scanrefer": 2, "multi3drefer": 2, "vision_only": 3}


@dataclass(frozen=True)
class Lanes:
    """Who reads each position of a step: the rank (as `rank_micro_batches` splits it) and that rank's loader
    worker (a DataLoader hands a rank's micro-batches to its `workers` processes in turn; 0: the rank itself)."""

    world_size: int = 1
    micro_batch: int = 1
    workers: int = 0

    def of(self, step: int, global_batch: int) -> np.ndarray:
        """(global_batch,) lane ids of one step's positions, the step being the `step`-th of its epoch."""
        workers = max(1, self.workers)
        position = np.arange(global_batch)
        micro_step = position // self.world_size // self.micro_batch
        grad_accum = global_batch // (self.world_size * self.micro_batch)
        # the epoch's first micro-batch may start at any worker: a constant shift, so lanes still map to one worker
        return position % self.world_size * workers + (step * grad_accum + micro_step) % workers


@dataclass(frozen=True)
class SceneOrder:
    """The `scene_local` order: each sample's scene, the run length, the buffer of open scenes, and the lanes."""

    scenes: Sequence[str]
    run_length: int = 8
    buffer: int = 2
    lanes: Lanes = Lanes()


def plan_epoch(
    tasks: Sequence[str],
    lengths: Sequence[int],
    global_batch: int,
    seed: int,
    epoch: int,
    grouping: Literal["task", "shuffle"] = "task",
    scene_order: SceneOrder | None = None,
) -> np.ndarray:
    """(n_steps, global_batch) int64 sample indices for one epoch."""
    if global_batch < 1:
        raise ValueError("global_batch must be >= 1")
    n = len(tasks)
    rng = np.random.default_rng([seed, epoch])
    if scene_order is not None:
        groups = np.zeros(n, np.int64) if grouping == "shuffle" else np.array([TASK_GROUP[t] for t in tasks])
        return _scene_local(groups, scene_order, global_batch, rng)
    if grouping == "shuffle":
        perm = rng.permutation(n)
        n_steps = n // global_batch
        return perm[: n_steps * global_batch].reshape(n_steps, global_batch).astype(np.int64)
    groups = np.array([TASK_GROUP[t] for t in tasks], dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    chunks = []
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        for c in range(len(members) // global_batch):
            chunk = members[c * global_batch:(c + 1) * global_batch]
            chunks.append(chunk[np.argsort(-lengths[chunk], kind="stable")])
    if not chunks:
        return np.zeros((0, global_batch), dtype=np.int64)
    order = rng.permutation(len(chunks))
    return np.stack([chunks[i] for i in order]).astype(np.int64)


def scene_runs(members: np.ndarray, scenes: np.ndarray, run_length: int, buffer: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """The runs of one group: scenes in a seeded order enter a buffer of `buffer` open scenes; each draw takes the
    next `run_length` samples (in a seeded order) of a random open scene, and an emptied scene makes room."""
    if run_length < 1 or buffer < 1:
        raise ValueError("run_length and buffer must be >= 1")
    own = scenes[members]
    pending = [rng.permutation(members[own == s]) for s in rng.permutation(np.unique(own))][::-1]
    open_scenes: list[np.ndarray] = []
    runs = []
    while pending or open_scenes:
        while pending and len(open_scenes) < buffer:
            open_scenes.append(pending.pop())
        i = int(rng.integers(len(open_scenes)))
        runs.append(open_scenes[i][:run_length])
        open_scenes[i] = open_scenes[i][run_length:]
        if not len(open_scenes[i]):
            open_scenes.pop(i)
    return runs


def _scene_local(groups: np.ndarray, order: SceneOrder, global_batch: int, rng: np.random.Generator) -> np.ndarray:
    """Steps as the task grouping makes them (a seeded arrangement of each group's full steps); each group's runs
    fill its steps lane by lane, every lane in time order, so consecutive samples of a lane share a scene."""
    if len(order.scenes) != len(groups):
        raise ValueError(f"{len(order.scenes)} scenes for {len(groups)} samples")
    _, scenes = np.unique(np.asarray(order.scenes), return_inverse=True)
    ids = np.unique(groups)
    counts = [int((groups == g).sum()) // global_batch for g in ids]
    labels = np.repeat(ids, counts)[rng.permutation(sum(counts))]
    plan = np.zeros((len(labels), global_batch), np.int64)
    for g in ids:
        rows = np.flatnonzero(labels == g)
        if not len(rows):
            continue
        runs = scene_runs(np.flatnonzero(groups == g), scenes, order.run_length, order.buffer, rng)
        stream = np.concatenate(runs)[:len(rows) * global_batch]
        step, position = np.repeat(rows, global_batch), np.tile(np.arange(global_batch), len(rows))
        lane = np.concatenate([order.lanes.of(int(r), global_batch) for r in rows])
        slots = np.lexsort((position, step, lane))  # by lane, then step, then position (= time within a lane)
        plan[step[slots], position[slots]] = stream
    return plan


def rank_micro_batches(step: np.ndarray, rank: int, world_size: int, micro_batch: int) -> np.ndarray:
    """This rank's share of one step, as (grad_accum, micro_batch) indices; ranks never overlap."""
    if len(step) % (world_size * micro_batch):
        raise ValueError(f"global batch {len(step)} does not split into {world_size} ranks x micro-batch {micro_batch}")
    return step[rank::world_size].reshape(-1, micro_batch)
