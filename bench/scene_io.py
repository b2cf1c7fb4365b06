"""I/O of the trainer's two data orders (`data.order: random | scene_local`), used by `bench/train_data.py --io`.

Two parts. (1) Measured: the real loader (`MicroBatchDataset`, DataLoader workers, the per-worker scene cache) over
a cache at the contract's sizes, with samples scaled to the real mix's samples per scene (the original's training
mix: 223,128 samples over about 1,200 training scenes, the five tasks in their proportions; docs/scene-local.md). The cache holds two
scenes; logical scene k reads physical scene k mod 2 through a wrapped CacheReader that logs every read and its
bytes and, for the cold runs, first drops that scene's files from the page cache (posix_fadvise DONTNEED per file;
writing /proc/sys/vm/drop_caches would drop every user's page cache on a shared machine), so every scene-cache miss
reads from the disk. (2) Computed at real size: the epoch plans replayed through a per-worker LRU scene cache, with
micro-batches handed to workers in turn (the rule the measured part and tests/test_train.py check).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ross3d.cache.reader import CacheReader
from ross3d.cache.store import scene_path
from ross3d.train.sampler import Lanes, SceneOrder, plan_epoch, rank_micro_batches

REAL_MIX = {"sqa3d": 79_445, "scanqa": 26_515, "scan2cap": 36_665, "scanrefer": 36_665, "multi3drefer": 43_838}
REAL_SCENES = 1_200


def scaled_mix(n_scenes: int) -> tuple[list[str], list[str]]:
    """(tasks, scene ids): every scene holds the real mix's per-scene count of each task (187 samples)."""
    per_scene = {task: round(count / REAL_SCENES) for task, count in REAL_MIX.items()}
    pairs = [(task, f"s{k}") for k in range(n_scenes) for task, c in per_scene.items() for _ in range(c)]
    return [t for t, _ in pairs], [s for _, s in pairs]


def plan(tasks, scenes, order: str, lanes: Lanes, global_batch: int, run_length: int, buffer: int) -> np.ndarray:
    scene_order = SceneOrder(scenes, run_length, buffer, lanes) if order == "scene_local" else None
    return plan_epoch(tasks, np.zeros(len(tasks)), global_batch, seed=0, epoch=0, scene_order=scene_order)


def replay_reads(epoch: np.ndarray, scenes, lanes: Lanes, cache: int) -> int:
    """Scene blocks read in one epoch: each rank's micro-batches go to its workers in turn, each worker keeps an
    LRU of `cache` scenes."""
    reads = 0
    workers = max(1, lanes.workers)
    for rank in range(lanes.world_size):
        micro = [mb for step in epoch for mb in rank_micro_batches(step, rank, lanes.world_size, lanes.micro_batch)]
        for w in range(workers):
            held: OrderedDict[str, None] = OrderedDict()
            for i in (int(i) for mb in micro[w::workers] for i in mb):
                if scenes[i] in held:
                    held.move_to_end(scenes[i])
                    continue
                reads += 1
                held[scenes[i]] = None
                if len(held) > cache:
                    held.popitem(last=False)
    return reads


def drop_from_page_cache(folder: Path) -> None:
    for parent, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


class LoggingReader(CacheReader):
    """The real reader, logging `scene bytes` per read; logical scene `s<k>` reads physical[k % len(physical)],
    from disk when `cold`. Set up by `measure` before the loader forks its workers."""

    log: Path
    physical: list[str] = []
    cold = False

    def load_scene(self, scene_id, strategy, bf16_bits=False, check=False):
        scene = self.physical[int(scene_id[1:]) % len(self.physical)]
        if self.cold:
            drop_from_page_cache(scene_path(self.cache_dir, scene))
        arrays = super().load_scene(scene, strategy, bf16_bits, check)
        with self.log.open("a") as f:  # appended from each loader worker
            f.write(f"{scene_id} {sum(a.nbytes for a in arrays.values())}\n")
        return arrays


def cold_read_check(cache_dir: Path, scene: str) -> tuple[float, float]:
    """Seconds to read one scene block from the page cache, then after dropping its files: shows the drop works."""
    import time

    reader = CacheReader(cache_dir)
    seconds = []
    for cold in (False, True):
        reader.load_scene(scene, "uniform", bf16_bits=True)
        if cold:
            drop_from_page_cache(scene_path(cache_dir, scene))
        start = time.perf_counter()
        reader.load_scene(scene, "uniform", bf16_bits=True)
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1]


def measure(cache_dir: Path, physical: list[str], tasks, scenes, epoch: np.ndarray, workers: int, cache: int,
            limit: int | None, cold: bool, log: Path) -> dict:
    """Run the real loader (one rank) over the epoch's first `limit` micro-batches of one sample."""
    import time

    from ross3d.cache import reader as reader_module
    from ross3d.train.config import DataConfig
    from ross3d.batches import TextSample
    from ross3d.train.data import MicroBatchDataset, micro_batch_order, micro_batches

    config = DataConfig(cache_dir=str(cache_dir), num_workers=workers, scene_cache=cache)
    text = np.arange(4, dtype=np.int64)
    samples = [TextSample(t, s, text, text, (), ()) for t, s in zip(tasks, scenes)]
    order = micro_batch_order(epoch, 0, 1, 1)[:limit]
    log.write_text("")
    LoggingReader.log, LoggingReader.physical, LoggingReader.cold = log, physical, cold
    reader_module.CacheReader = LoggingReader  # the scene cache opens its reader by this name
    start = time.perf_counter()
    n = sum(1 for _ in micro_batches(MicroBatchDataset(samples, config, pad_id=0), order, config, on_gpu=False))
    seconds = time.perf_counter() - start
    sizes = [int(line.split()[1]) for line in log.read_text().splitlines()]
    return {"samples": n, "reads": len(sizes), "bytes": sum(sizes), "seconds": seconds,
            "block": max(sizes) if sizes else 0}


def report(root: Path, n_scenes: int, cold_samples: int, run_length: int, buffer: int) -> None:
    """Build the cache, measure both orders on the scaled mix, replay both at real size, print two tables."""
    from rich.console import Console
    from rich.table import Table

    from train_fixtures import SCENES, build_train_inputs

    inputs = build_train_inputs(root, num_frames=32, siglip_width=1152)
    check = cold_read_check(inputs["cache"], SCENES[0])
    tasks, scenes = scaled_mix(n_scenes)
    lanes, cache = Lanes(1, 1, 2), 2  # one rank, micro-batch 1 x accumulation 8, 2 workers, the 7B config's cache
    table = Table(title=f"measured: {len(tasks)} samples over {n_scenes} scenes ({len(tasks) // n_scenes} per scene, "
                        f"the real mix's tasks), 1 rank x 2 loader workers, micro-batch 1 x 8, scene cache {cache}; "
                        f"scene_local runs of {run_length}, buffer {buffer}")
    for col in ("order", "reads / epoch (replayed)", "hit rate", "GB read / epoch", "MB read / sample",
                "samples/s, page cache warm", f"samples/s, every read from disk (first {cold_samples})"):
        table.add_column(col, justify="left" if col == "order" else "right")
    block = 0
    for order in ("random", "scene_local"):
        epoch = plan(tasks, scenes, order, lanes, 8, run_length, buffer)
        args = (inputs["cache"], SCENES, tasks, scenes, epoch, lanes.workers, cache)
        warm = measure(*args, limit=None, cold=False, log=root / "reads.txt")
        cold = measure(*args, limit=cold_samples, cold=True, log=root / "reads.txt")
        block = warm["block"]
        table.add_row(order, f"{warm['reads']:,} ({replay_reads(epoch, scenes, lanes, cache):,})",
                      f"{1 - warm['reads'] / warm['samples']:.1%}", f"{warm['bytes'] / 1e9:.1f}",
                      f"{warm['bytes'] / warm['samples'] / 1e6:.1f}", f"{warm['samples'] / warm['seconds']:.1f}",
                      f"{cold['samples'] / cold['seconds']:.1f}")
    Console(width=150).print(table)
    print(f"one block read in this process: {check[0]:.3f} s from the page cache, {check[1]:.3f} s after dropping its "
          f"files from it (posix_fadvise DONTNEED)")

    tasks, scenes = scaled_mix(REAL_SCENES)
    lanes = Lanes(8, 1, 4)  # the 7B recipe: 8 ranks x micro-batch 1 x accumulation 32, 4 loader workers
    real = Table(title=f"computed at real size: {len(tasks):,} samples over {REAL_SCENES:,} scenes, 8 ranks x 4 "
                       f"workers, global batch 256, one scene block = {block / 1e6:.1f} MB (measured above)")
    for col in ("order", "scene cache / worker", "reads / epoch", "hit rate", "TB read / epoch",
                "MB / sample"):
        real.add_column(col, justify="left" if col == "order" else "right")
    for order in ("random", "scene_local"):
        epoch = plan(tasks, scenes, order, lanes, 256, run_length, buffer)
        for size in (2, 8):
            reads = replay_reads(epoch, scenes, lanes, size)
            real.add_row(order, str(size), f"{reads:,}", f"{1 - reads / epoch.size:.1%}",
                         f"{reads * block / 1e12:.2f}", f"{reads * block / epoch.size / 1e6:.1f}")
    Console(width=150).print(real)
