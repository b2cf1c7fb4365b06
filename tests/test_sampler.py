"""Epoch plans: single-task steps, determinism, length order, and rank sharding without overlap."""

from __future__ import annotations

import numpy as np
import pytest

from ross3d.train.sampler import TASK_GROUP, plan_epoch, rank_micro_batches

TASKS = ["scanqa"] * 37 + ["sqa3d"] * 20 + ["scan2cap"] * 25 + ["scanrefer"] * 18 + ["multi3drefer"] * 9


def test_task_grouped_steps_are_single_task():
    lengths = np.random.default_rng(1).integers(5, 50, len(TASKS))
    plan = plan_epoch(TASKS, lengths, global_batch=8, seed=3, epoch=0)
    groups = np.array([TASK_GROUP[t] for t in TASKS])
    # QA group 57 -> 7 steps, captioning 25 -> 3, grounding 27 -> 3: only incomplete remainders dropped.
    assert plan.shape == (13, 8)
    assert len(np.unique(plan)) == plan.size
    for step in plan:
        assert len(set(groups[step])) == 1
        assert (np.diff(lengths[step]) <= 0).all()
    assert sorted(np.bincount(groups[plan[:, 0]]).tolist()) == [3, 3, 7]


def test_plans_are_deterministic_per_seed_and_epoch():
    lengths = np.arange(len(TASKS))
    a = plan_epoch(TASKS, lengths, 4, seed=0, epoch=0)
    assert np.array_equal(a, plan_epoch(TASKS, lengths, 4, seed=0, epoch=0))
    assert not np.array_equal(a, plan_epoch(TASKS, lengths, 4, seed=0, epoch=1))
    shuffled = plan_epoch(TASKS, lengths, 4, seed=0, epoch=0, grouping="shuffle")
    assert shuffled.shape == (len(TASKS) // 4, 4) and len(np.unique(shuffled)) == shuffled.size


def test_rank_sharding_partitions_each_step():
    plan = plan_epoch(TASKS, np.zeros(len(TASKS)), global_batch=12, seed=0, epoch=0)
    for step in plan:
        shares = [rank_micro_batches(step, r, world_size=3, micro_batch=2) for r in range(3)]
        assert all(s.shape == (2, 2) for s in shares)
        assert sorted(np.concatenate([s.ravel() for s in shares]).tolist()) == sorted(step.tolist())
    with pytest.raises(ValueError, match="does not split"):
        rank_micro_batches(plan[0], 0, world_size=5, micro_batch=1)
