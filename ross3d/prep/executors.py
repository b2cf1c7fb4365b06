"""Executors that run the same per-scene job over many scenes: in-process, a local process pool, or Ray
(optional extra `ross3d[ray]`). Each yields SceneResults as scenes finish, in completion order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ross3d.errors import ConfigError
from ross3d.prep.options import PrepOptions
from ross3d.prep.scene_job import SceneResult, process_scene

EXECUTORS = ("local", "ray")


def run_local(scans_dir: Path, prep_dir: Path, scene_ids: list[str], options: PrepOptions, workers: int
              ) -> Iterator[SceneResult]:
    if workers <= 1:
        for scene_id in scene_ids:
            yield process_scene(scans_dir, scene_id, prep_dir, options)
        return
    context = multiprocessing.get_context("spawn")  # open3d and BLAS threads do not survive fork reliably
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(process_scene, scans_dir, s, prep_dir, options) for s in scene_ids]
        for future in as_completed(futures):
            yield future.result()


def check_executor(executor: str) -> None:
    """Fail before any work when the executor is unknown or Ray is missing."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'ross3d[ray]'") from None


def run_ray(scans_dir: Path, prep_dir: Path, scene_ids: list[str], options: PrepOptions, address: str | None
            ) -> Iterator[SceneResult]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        job = ray.remote(process_scene)
        pending = [job.remote(str(scans_dir), s, str(prep_dir), options) for s in scene_ids]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def run_scenes(executor: str, scans_dir: Path, prep_dir: Path, scene_ids: list[str], options: PrepOptions,
               workers: int = 1, ray_address: str | None = None) -> Iterator[SceneResult]:
    check_executor(executor)
    if executor == "ray":
        return run_ray(scans_dir, prep_dir, scene_ids, options, ray_address)
    return run_local(scans_dir, prep_dir, scene_ids, options, workers)
