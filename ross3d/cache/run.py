"""`cache_latents`: PREP_DIR -> CACHE_DIR, holding the CACHE_DIR lock (ross3d.locking). Checks the fingerprint
against an existing cache (refuse, or rebuild when asked), skips scenes already committed with the same
fingerprint, loads scenes in worker threads while the encoders run, writes each scene atomically in a writer
thread, and ends with index.parquet and manifest.json. Under torchrun each rank takes a disjoint share of the
scenes; rank 0 writes the index once at the end."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ross3d.cache import fingerprint as fp
from ross3d.cache.encode import encode_group, images_per_scene
from ross3d.cache.encoders import DTYPES, VaeEncoder, VisionEncoder
from ross3d.cache.index import read_manifest, write_index_and_manifest
from ross3d.cache.inputs import LoadedScene, PrepIndex, PrepScene, load_scene, read_prep
from ross3d.cache.preprocess import PreprocessParams, bev_params
from ross3d.cache.store import ZARR_DIR, prepare_store, read_record, write_scene
from ross3d.cache import distributed as dist
from ross3d.errors import ConfigError, InputError, Ross3DError
from ross3d.locking import exclusive_lock
from ross3d.prep.options import STRATEGIES
from ross3d.progress import NullProgress, Progress

log = logging.getLogger(__name__)

STORAGE = {"vae_mean": "float32", "vae_logvar": "float32", "vision": "bfloat16 bits in uint16"}


@dataclass(frozen=True)
class CacheOptions:
    """Options of `ross3d cache-latents`; only those that change the output enter the fingerprint."""

    strategies: tuple[str, ...] = STRATEGIES
    dtype: str | None = None  # compute dtype; None: bf16 on cuda, fp32 on cpu
    device: str | None = None
    batch_size: int = 16
    workers: int = 4
    resume: bool = True
    rebuild: bool = False

    def __post_init__(self) -> None:
        if not self.strategies or any(s not in STRATEGIES for s in self.strategies):
            raise ConfigError(f"strategy must be uniform, max-coverage or both, got {self.strategies}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError("--batch-size and --workers must be >= 1")


@dataclass
class CacheReport:
    ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0


def fingerprint_tree(vae: VaeEncoder, vision: VisionEncoder | None, prep: PrepIndex,
                     strategies: tuple[str, ...], params: PreprocessParams) -> dict:
    return {"format_version": fp.FORMAT_VERSION, "vae": vae.fingerprint(),
            "vision": vision.fingerprint() if vision else None, "preprocess": params.to_dict(),
            "storage": STORAGE, "strategies": sorted(strategies), "prep": prep.fingerprint}


def _check_existing(cache_dir: Path, tree: dict, rebuild: bool) -> None:
    """Refuse a cache built with other settings (or remove it when rebuilding); stale latents never mix."""
    try:
        old = read_manifest(cache_dir).get("fingerprints")
    except InputError:
        old = None
    if old is None and not (cache_dir / ZARR_DIR).exists():
        return
    if old == tree:
        return
    if not rebuild:
        what = "; ".join(fp.differences(old, tree)) if old else "its manifest.json is missing or unreadable"
        raise ConfigError(f"{cache_dir} was built with other settings ({what}); "
                          "use another CACHE_DIR or pass --rebuild to replace it")
    if dist.rank() == 0:
        log.warning("rebuilding %s: settings changed", cache_dir)
        shutil.rmtree(cache_dir / ZARR_DIR, ignore_errors=True)
        (cache_dir / "index.parquet").unlink(missing_ok=True)


def _committed(record: dict | None, digest: str, scene: PrepScene) -> bool:
    """The scene is cached with these settings from the PREP scene's current inputs."""
    return record is not None and record.get("fingerprint") == digest and \
        record.get("prep_inputs", "") == scene.inputs_fingerprint


def _loaded(prep: PrepIndex, scenes, workers: int, mask_size: int, report: CacheReport) -> Iterator[LoadedScene]:
    """Scenes decoded in worker threads, a bounded window ahead of the encoder; failures go to the report."""
    with ThreadPoolExecutor(workers, thread_name_prefix="cache-load") as pool:
        window: list[tuple[str, Future]] = []
        queue = iter(scenes)
        for scene in queue:
            window.append((scene.scene_id, pool.submit(load_scene, prep.prep_dir, scene, prep.bev_size, mask_size)))
            if len(window) >= 2 * workers:
                break
        while window:
            scene_id, future = window.pop(0)
            nxt = next(queue, None)
            if nxt is not None:
                window.append((nxt.scene_id, pool.submit(load_scene, prep.prep_dir, nxt, prep.bev_size, mask_size)))
            try:
                yield future.result()
            except Ross3DError as err:
                report.failed[scene_id] = str(err)


def _groups(loaded: Iterator[LoadedScene], min_views: int) -> Iterator[list[LoadedScene]]:
    group: list[LoadedScene] = []
    for scene in loaded:
        group.append(scene)
        if sum(len(s.frame_idx) for s in group) >= min_views:
            yield group
            group = []
    if group:
        yield group


def _encode_and_write(cache_dir, prep, todo, vae, vision, options, mask_size, digest, report, progress) -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="cache-write") as writer:
        pending: list[Future] = []
        for group in _groups(_loaded(prep, todo, options.workers, mask_size, report), options.batch_size):
            for scene, (arrays, attrs) in zip(group, encode_group(group, vae, vision, options.batch_size, progress)):
                record = {"fingerprint": digest, "prep_inputs": scene.scene.inputs_fingerprint,
                          "strategies": sorted(scene.positions),
                          "n_frames": len(next(iter(scene.scene.frames.values()))),
                          "n_objects": len(scene.scene.object_ids)}
                pending.append(writer.submit(write_scene, cache_dir, scene.scene.scene_id, arrays, attrs, record))
                report.ok.append(scene.scene.scene_id)
                report.images += images_per_scene(scene.scene.frames, vision is not None)
            while len(pending) > 2:
                pending.pop(0).result()
                progress.advance("scenes")
        for future in pending:
            future.result()
            progress.advance("scenes")


def cache_latents(prep_dir: str | Path, cache_dir: str | Path, vae_dir: str | Path,
                  vision_dir: str | Path | None = None, options: CacheOptions | None = None,
                  progress: Progress | None = None) -> CacheReport:
    """Run stage 2; scene failures (unreadable PREP files) are reported, setting errors raised."""
    options = options or CacheOptions()
    progress = progress or NullProgress()
    cache_dir, start = Path(cache_dir), time.perf_counter()
    with exclusive_lock(cache_dir, "cache-latents"), dist.session(options.device) as device:
        dtype = options.dtype or ("bf16" if device.type == "cuda" else "fp32")
        prep = read_prep(prep_dir, options.strategies)
        vae = VaeEncoder(vae_dir, device, dtype)
        vision = VisionEncoder(vision_dir, device, dtype) if vision_dir else None
        params = bev_params(prep.bev_size, vae.downsample, Path(prep_dir) / "manifest.json")
        tree = fingerprint_tree(vae, vision, prep, options.strategies, params)
        digest = fp.digest(tree)
        _check_existing(cache_dir, tree, options.rebuild)
        if dist.rank() == 0:
            cache_dir.mkdir(parents=True, exist_ok=True)
            (cache_dir / "index.parquet").unlink(missing_ok=True)
            write_index_and_manifest(cache_dir, tree, digest, {}, complete=False)
            prepare_store(cache_dir)
        dist.barrier()
        report = CacheReport()
        mine = dist.my_share(prep.scenes)
        if options.resume:
            report.skipped = [s.scene_id for s in mine if _committed(read_record(cache_dir, s.scene_id), digest, s)]
        todo = [s for s in mine if s.scene_id not in report.skipped]
        progress.start("scenes", len(mine), "scenes", unit="scenes")
        progress.advance("scenes", len(report.skipped))
        progress.start("images", sum(images_per_scene(s.frames, vision is not None) for s in todo), "encoding",
                       unit="images")
        _encode_and_write(cache_dir, prep, todo, vae, vision, options, params.mask_size, digest, report, progress)
        progress.finish("images")
        progress.finish("scenes")
        dist.record_failures(cache_dir, report.failed)
        dist.barrier()
        if dist.rank() == 0:
            write_index_and_manifest(cache_dir, tree, digest, dist.collect_failures(cache_dir), complete=True,
                                     scene_ids=[s.scene_id for s in prep.scenes], prep_failed=prep.failed)
    report.seconds = time.perf_counter() - start
    return report
