"""Epoch plans: single-task steps, determinism, length order, and rank sharding without overlap."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ross3d.train.sampler import TASK_GROUP, Lanes, SceneOrder, plan_epoch, rank_micro_batches, scene_runs

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


# scene_local: QA on scenes q0..q11, captioning on c0..c7, grounding on g0..g3, two samples each (one run of 2)
SCENE_TASKS = ["scanqa"] * 24 + ["scan2cap"] * 16 + ["scanrefer"] * 8
SCENE_IDS = [f"q{i // 2}" for i in range(24)] + [f"c{i // 2}" for i in range(16)] + [f"g{i // 2}" for i in range(8)]


def _worker_sequences(plan, world_size, micro_batch, workers):
    """Each (rank, loader worker)'s samples in reading order: ranks split steps as rank_micro_batches does, and
    a DataLoader hands a rank's micro-batches to its workers in turn."""
    out = []
    for rank in range(world_size):
        micro = [mb for step in plan for mb in rank_micro_batches(step, rank, world_size, micro_batch)]
        out += [[int(i) for mb in micro[w::workers] for i in mb] for w in range(workers)]
    return out


def _scene_switches(plan, scenes, world_size, micro_batch, workers):
    """Scene blocks a one-scene cache per worker reads: the maximal same-scene stretches of each worker."""
    return sum(sum(1 for k, i in enumerate(seq) if k == 0 or scenes[i] != scenes[seq[k - 1]])
               for seq in _worker_sequences(plan, world_size, micro_batch, workers))


@pytest.mark.parametrize("world_size,micro_batch,workers", [(2, 1, 2), (1, 2, 2), (2, 2, 1), (1, 1, 0)])
def test_scene_local_is_a_task_grouped_permutation_read_once_per_run(world_size, micro_batch, workers):
    lanes = Lanes(world_size, micro_batch, workers)
    order = SceneOrder(SCENE_IDS, run_length=2, buffer=3, lanes=lanes)
    plan = plan_epoch(SCENE_TASKS, np.zeros(48), global_batch=8, seed=5, epoch=2, scene_order=order)
    # 24 + 16 + 8 samples fill 3 + 2 + 1 steps of 8 exactly: the epoch is a permutation of all samples
    assert plan.shape == (6, 8) and sorted(plan.ravel().tolist()) == list(range(48))
    groups = np.array([TASK_GROUP[t] for t in SCENE_TASKS])
    assert all(len(set(groups[step])) == 1 for step in plan)
    assert sorted(groups[plan[:, 0]].tolist()) == [0, 0, 0, 1, 1, 2]
    # every worker's share of a step is 2 samples (one run): 24 scenes, 24 runs, 24 reads
    assert _scene_switches(plan, SCENE_IDS, world_size, micro_batch, max(1, workers)) == 24
    shuffled = plan_epoch(SCENE_TASKS, np.zeros(48), global_batch=8, seed=5, epoch=2)
    assert _scene_switches(shuffled, SCENE_IDS, world_size, micro_batch, max(1, workers)) > 36


def test_scene_local_is_a_pure_function_of_seed_and_epoch():
    order = SceneOrder(SCENE_IDS, run_length=2, buffer=2, lanes=Lanes(2, 1, 2))
    a = plan_epoch(SCENE_TASKS, np.zeros(48), 8, seed=1, epoch=0, scene_order=order)
    assert np.array_equal(a, plan_epoch(SCENE_TASKS, np.zeros(48), 8, seed=1, epoch=0, scene_order=order))
    assert not np.array_equal(a, plan_epoch(SCENE_TASKS, np.zeros(48), 8, seed=1, epoch=1, scene_order=order))
    assert not np.array_equal(a, plan_epoch(SCENE_TASKS, np.zeros(48), 8, seed=2, epoch=0, scene_order=order))


def test_scene_runs_take_run_length_samples_of_one_open_scene():
    # 3 scenes of 7, 5 and 3 samples, runs of at most 3: ceil(7/3) + ceil(5/3) + 1 = 6 runs
    scenes = np.array([0] * 7 + [1] * 5 + [2] * 3)
    runs = scene_runs(np.arange(15), scenes, run_length=3, buffer=2, rng=np.random.default_rng(0))
    assert sorted(np.concatenate(runs).tolist()) == list(range(15))
    assert sorted(len(r) for r in runs) == [1, 2, 3, 3, 3, 3]
    assert all(len(set(scenes[r])) == 1 for r in runs)
    # with one open scene, each scene's runs follow each other: scene by scene
    single = scene_runs(np.arange(15), scenes, run_length=3, buffer=1, rng=np.random.default_rng(0))
    order = [int(scenes[r[0]]) for r in single]
    assert sum(a != b for a, b in zip(order, order[1:])) == 2
    # with the task grouping, incomplete remainders are dropped as in the random order
    tasks = ["scanqa"] * 11 + ["scan2cap"] * 5
    plan = plan_epoch(tasks, np.zeros(16), 4, 0, 0, scene_order=SceneOrder([f"s{i % 3}" for i in range(16)], 3, 2))
    assert plan.shape == (3, 4) and len(np.unique(plan)) == 12


def test_task_repeat_packs_each_copy_on_its_own():
    """`data.task_repeat`: a repeated task's rows appear that many times per epoch, never twice in one pack; other
    tasks once. Hand-counted: scanrefer/a has 5 rows -> 3 copies of 2 + 2 + 1 packs."""
    from collections import Counter

    from ross3d.prep.qa.schema import Sample
    from ross3d.train.packing import pack_rows

    data = ([Sample(f"scanqa/{i}", "train", "scanqa", "a", [], []) for i in range(4)]
            + [Sample(f"scanrefer/{i}", "train", "scanrefer", "a", [], []) for i in range(5)])
    packs = pack_rows(data, 2, seed=0, repeat={"scanrefer": 3})
    counts = Counter(r.sample_id for p in packs for r in p)
    assert counts == {**{f"scanqa/{i}": 1 for i in range(4)}, **{f"scanrefer/{i}": 3 for i in range(5)}}
    assert all(len({r.sample_id for r in p}) == len(p) for p in packs)
    assert sorted(len(p) for p in packs if p[0].task == "scanrefer") == [1, 1, 1, 2, 2, 2, 2, 2, 2]
    copies = [frozenset(r.sample_id for r in p) for p in packs if p[0].task == "scanrefer"]
    assert len(set(copies[:3]) | set(copies[3:6]) | set(copies[6:])) > 3  # each copy in its own order
    unpacked = [p[0].sample_id for p in pack_rows(data, 1, seed=0, repeat={"scanrefer": 2})]
    assert unpacked == [r.sample_id for r in data] + [f"scanrefer/{i}" for i in range(5)]


def test_task_repeat_config_is_checked():
    from ross3d.errors import ConfigError
    from ross3d.train.config import load_train_config

    config = load_train_config(None, ["data.task_repeat={scanrefer: 3, multi3drefer: 2}"])
    assert config.data.task_repeat == {"scanrefer": 3, "multi3drefer": 2}
    assert load_train_config(None, ["data.task_repeat.scanrefer=4"]).data.task_repeat == {"scanrefer": 4}
    for bad, message in (("{scanrefr: 2}", "data.task_repeat: {'scanrefr': 2}"),
                         ("{scanrefer: 0}", "data.task_repeat: {'scanrefer': 0}"),
                         ("{scanrefer: two}", "data.task_repeat.scanrefer: expected an integer"),
                         ("[scanrefer]", "data.task_repeat: expected a mapping")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_train_config(None, [f"data.task_repeat={bad}"])


def test_packing_groups_rows_of_one_task_and_scene_into_chunks():
    from ross3d.prep.qa.schema import Sample
    from ross3d.train.packing import pack_rows

    def rows(task, scene, n):
        return [Sample(f"{task}/{scene}/{i}", "train", task, scene, [], []) for i in range(n)]

    data = (rows("scanqa", "a", 5) + rows("scan2cap", "a", 3) + rows("scanqa", "b", 2) + rows("scanrefer", "a", 4)
            + rows("vision_only", "a", 2))
    packs = pack_rows(data, 2, seed=0)
    ids = [r.sample_id for pack in packs for r in pack]
    assert sorted(ids) == sorted(r.sample_id for r in data)  # every row exactly once
    assert all(len({(r.task, r.scene_id) for r in pack}) == 1 for pack in packs)
    sizes = {}
    for pack in packs:
        sizes.setdefault((pack[0].task, pack[0].scene_id), []).append(len(pack))
    # 5 -> 2 + 2 + 1, 3 -> 2 + 1, 2 -> 2, 4 -> 2 + 2; vision-only rows (no text) stay single
    assert sizes == {("scanqa", "a"): [2, 2, 1], ("scan2cap", "a"): [2, 1], ("scanqa", "b"): [2],
                     ("scanrefer", "a"): [2, 2], ("vision_only", "a"): [1, 1]}
    assert [[r.sample_id for r in p] for p in pack_rows(data, 2, seed=0)] == [[r.sample_id for r in p] for p in packs]
    assert [[r.sample_id for r in p] for p in pack_rows(data, 2, seed=1)] != [[r.sample_id for r in p] for p in packs]
    assert [p[0].sample_id for p in pack_rows(data, 1, seed=5)] == [r.sample_id for r in data]  # file order
    # every epoch packs anew: other companions, the same rows, the same pack sizes; reproducible per (seed, epoch)
    again = pack_rows(data, 2, seed=0, epoch=1)
    assert sorted(r.sample_id for p in again for r in p) == sorted(ids)
    assert {frozenset(r.sample_id for r in p) for p in again} != {frozenset(r.sample_id for r in p) for p in packs}
    assert sorted(map(len, again)) == sorted(map(len, packs))
    assert [[r.sample_id for r in p] for p in pack_rows(data, 2, seed=0, epoch=1)] == [[r.sample_id for r in p]
                                                                                       for p in again]
