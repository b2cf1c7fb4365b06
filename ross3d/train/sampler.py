"""Epoch plans: which samples form each optimizer step, and which of them each rank trains on.

`task` grouping follows the original (docs/original-model.md section 9): per task group a seeded permutation cut into
chunks of one global batch, each chunk sorted by text length (descending), all chunks shuffled together, so every
optimizer step holds a single task. Unlike the original, only the incomplete remainder of each group is dropped
(the original also dropped the last full chunk). `shuffle` is a plain seeded permutation. A plan is a pure function
of (seed, epoch), so a resumed run replays exactly the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

# The original's task ids: QA tasks share a group, captioning is one, grounding tasks share one.
TASK_GROUP = {"scanqa": 0, "sqa3d": 0, "scan2cap": 1, "scanrefer": 2, "multi3drefer": 2}


def plan_epoch(
    tasks: Sequence[str],
    lengths: Sequence[int],
    global_batch: int,
    seed: int,
    epoch: int,
    grouping: Literal["task", "shuffle"] = "task",
) -> np.ndarray:
    """(n_steps, global_batch) int64 sample indices for one epoch."""
    if global_batch < 1:
        raise ValueError("global_batch must be >= 1")
    n = len(tasks)
    rng = np.random.default_rng([seed, epoch])
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


def rank_micro_batches(step: np.ndarray, rank: int, world_size: int, micro_batch: int) -> np.ndarray:
    """This rank's share of one step, as (grad_accum, micro_batch) indices; ranks never overlap."""
    if len(step) % (world_size * micro_batch):
        raise ValueError(f"global batch {len(step)} does not split into {world_size} ranks x micro-batch {micro_batch}")
    return step[rank::world_size].reshape(-1, micro_batch)
