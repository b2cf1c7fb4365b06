"""Benchmark of the trainer's data path against the original's per-sample path, on the same scenes.

Ours: `ross3d.train.data.MicroBatchDataset` (one micro-batch of 1 sample per item) over a real CACHE_DIR at the
contract's sizes (32 views, SigLIP features 729 x 1152, VAE posteriors 32 x 16 x 27 x 27, BEV 16 x 54 x 54), read
through CacheReader; "cold" keeps no scene in memory and alternates scenes, so every sample reads its scene block
(the worst case), "warm" serves samples of a scene already read. The cache files are in the page cache, as the
cache was just written: a cache larger than memory reads at the disk's speed instead (57 MB per cold sample). The original (docs/original-model.md 7.4-7.5): per sample,
decode 32 ScanNet-size JPEGs (1296x968) and 32 depth PNGs (640x480), unproject and crop the world coordinates,
resize and crop the views and apply the SigLIP normalisation, and VAE-encode the BEV (432) and 8 views (216), with a
tiny random FLUX-shaped VAE on CPU (the real VAE would make the original far slower). The frames are the scenes'
selected frames upscaled to ScanNet size once, before timing. Prints one table.

With `--data-wait` (on a GPU machine) it instead trains a mid-size Ross3D (Qwen2 vocabulary, 4 layers of 512) with
`ross3d.train` on a cache of the same scenes built there, and prints the fraction of step time spent waiting for data.
`--prep DIR` reuses a PREP_DIR with samples.parquet (for a machine without the scan-building stack).

It also prints the trainer's first-read check (checksums and finite values of a scene, once per scene per run)
against a cold read (the scene's files dropped from the page cache first) and a page-cache read, per first read
and over the first epoch of the real mix (`--check-cost`: that table alone).

With `--io` it prints the I/O of the two data orders (`data.order: random | scene_local`): scene reads, bytes and
scene-cache hit rate per epoch and samples/s with every read from disk, measured on the mix scaled down to a few
scenes and computed at real size (bench/scene_io.py).

    .venv/bin/python bench/train_data.py [--samples-original 6] [--samples-cached 40]
    python bench/train_data.py --data-wait --prep PREP_DIR [--steps 12]
    .venv/bin/python bench/train_data.py --check-cost [--samples-cached 40]
    .venv/bin/python bench/train_data.py --io [--io-scenes 6] [--io-cold-samples 96] [--run-length 8] [--buffer 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

COLOR_SIZE, DEPTH_SIZE = (1296, 968), (640, 480)
MASKED_VIEWS = 8


def original_scene(prep: Path, scene_id: str) -> dict:
    """The inputs the original reads per sample, at ScanNet sizes: JPEG and PNG bytes, poses, intrinsics, BEV."""
    import cv2
    import pyarrow.parquet as pq
    import zarr

    scene = next(r for r in pq.read_table(prep / "scenes.parquet").to_pylist() if r["scene_id"] == scene_id)
    chosen = [r["frame_idx"] for r in sorted(pq.read_table(prep / "selections.parquet").to_pylist(),
                                             key=lambda r: r["rank"])
              if r["scene_id"] == scene_id and r["strategy"] == "uniform"]
    frames = {r["frame_idx"]: r for r in pq.read_table(prep / "scenes" / scene_id / "frames.parquet").to_pylist()}
    kept = [r["frame_idx"] for r in pq.read_table(prep / "scenes" / scene_id / "frames.parquet").to_pylist()]
    arrays = zarr.open_group(prep / "scenes" / scene_id / "arrays.zarr", mode="r")
    depth_all = arrays["depth"][...]
    intrinsic = np.asarray(scene["intrinsic_depth"], np.float64).reshape(4, 4).copy()
    intrinsic[:2] *= DEPTH_SIZE[0] / scene["depth_width"]
    jpegs, pngs, poses = [], [], []
    for idx in chosen:
        color = cv2.imdecode(np.frombuffer(frames[idx]["color_jpeg"], np.uint8), cv2.IMREAD_COLOR)
        jpegs.append(cv2.imencode(".jpg", cv2.resize(color, COLOR_SIZE, interpolation=cv2.INTER_CUBIC))[1].tobytes())
        depth = cv2.resize(depth_all[kept.index(idx)], DEPTH_SIZE, interpolation=cv2.INTER_NEAREST)
        pngs.append(cv2.imencode(".png", depth)[1].tobytes())
        poses.append(np.asarray(frames[idx]["pose"], np.float64).reshape(4, 4))
    axis = np.asarray(scene["axis_align"], np.float64).reshape(4, 4)
    return {"jpegs": jpegs, "pngs": pngs, "poses": [axis @ p for p in poses], "intrinsic": intrinsic,
            "bev": arrays["bev/rgb"][...]}


def original_sample(scene: dict, vae, rng: np.random.Generator) -> dict:
    """One sample the original's way: decode, unproject, preprocess, encode."""
    import cv2

    from ross3d.cache.preprocess import decode_view, to_unit_range, vae_view_input
    from ross3d.prep.geometry import frame_crop_points

    pixels = to_unit_range(np.stack([decode_view(j, *DEPTH_SIZE) for j in scene["jpegs"]]))
    coords = [frame_crop_points(cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED), scene["intrinsic"],
                                pose, 1000.0) for p, pose in zip(scene["pngs"], scene["poses"])]
    masked = rng.choice(len(pixels), MASKED_VIEWS, replace=False)
    with torch.no_grad():
        bev = to_unit_range(torch.from_numpy(scene["bev"])[None])
        bev_latent = vae.encode(bev).latent_dist
        view_latent = vae.encode(vae_view_input(pixels[masked])).latent_dist
    return {"pixels": pixels, "coords": coords, "bev": bev_latent.mean, "views": view_latent.mean}


def build_train_inputs_prep(root: Path) -> Path:
    from train_fixtures import build_train_inputs

    return build_train_inputs(root / "inputs", num_frames=32, siglip_width=32)["prep"]


def time_it(fn, n: int) -> float:
    """Samples per second over n calls (after one warm-up call)."""
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i + 1)
    return n / (time.perf_counter() - start)


MID_MODEL = ["vocab_size=151936", "hidden_size=512", "num_layers=4", "num_heads=8", "num_kv_heads=2",
             "intermediate_size=1408", "denoiser_dim=256", "denoiser_depth=2", "denoiser_heads=4"]


def data_wait(prep: Path, root: Path, steps: int, workers: int) -> list[dict]:
    """Cache `prep` with tiny encoders (SigLIP width 1152), train the mid-size model, return the log records."""
    from ross3d.cache import tiny
    from ross3d.cache.run import CacheOptions, cache_latents
    from ross3d.train.config import load_train_config
    from ross3d.train.loop import train
    from ross3d.train.metrics import read_log

    vae = tiny.save_tiny_vae(root / "vae")
    siglip = tiny.save_tiny_siglip(root / "siglip", hidden_size=1152, num_layers=1)
    cache_latents(prep, root / "cache", vae, siglip, CacheOptions(strategies=("uniform",)))
    overrides = [f"data.prep_dir={prep}", f"data.cache_dir={root / 'cache'}", f"output_dir={root / 'run'}",
                 f"max_steps={steps}", "micro_batch=1", "grad_accum=8", f"data.num_workers={workers}",
                 "data.scene_cache=1", "tensorboard=false", f"model.overrides={MID_MODEL}"]
    train(load_train_config(None, overrides))
    return read_log(root / "run" / "log.jsonl")


def data_wait_table(records: list[dict], workers: int) -> None:
    from rich.console import Console
    from rich.table import Table

    steady = records[2:]  # the first steps include start-up (workers forking, CUDA warm-up)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    table = Table(title=f"data wait at a mid-size model ({device}, "
                        f"micro-batch 1 x 8, {workers} loader workers, scene cache 1: every sample reads its scene)")
    for col in ("steps", "samples/s", "data wait (median)", "data wait (max)"):
        table.add_column(col, justify="right")
    waits = [r["data_wait_fraction"] for r in steady]
    table.add_row(str(len(steady)), f"{np.median([r['samples_per_s'] for r in steady]):.1f}",
                  f"{100 * np.median(waits):.2f}%", f"{100 * max(waits):.2f}%")
    Console().print(table)



# reads per epoch of the real mix at the 7B layout (8 ranks x 4 workers), replayed by `--io` (docs/scene-local.md)
RANKS = 8
EPOCH_READS = {"random, scene cache 2": 223_642, "scene_local (8, 2), scene cache 2": 22_040,
               "scene_local (8, 2), scene cache 8": 4_206}


def first_read_check_cost(cache: Path, scenes: list[str], n: int) -> dict[str, float]:
    """Milliseconds (medians over n pairs of cold reads, 4n pairs of page-cache reads, alternating scenes) of a scene
    read through `load_scene` from the page cache and cold (the scene's files dropped from the page cache,
    posix_fadvise DONTNEED, before each read), each with and without the first-read check (`check=True`), the four
    side by side. The check runs inside the read (during
    the copy of each uncompressed array), so its own cost is the median of the paired differences of page-cache
    reads with and without it: the CPU work it adds, the same in a cold read (where it may also overlap the disk's
    readahead). The check's own cost is measured three times: on the records as written (finiteness attested by the
    writer: XXH3 only), on the same records rewritten as the previous version wrote them (`crc32c` and
    `finite_crc32c`: CRC32C only, the baseline in the same run), then on those without `finite_crc32c`, as older
    caches have them (CRC32C and the finiteness pass)."""
    from scene_io import drop_from_page_cache

    from ross3d.cache.checksum import array_checksum, attestation
    from ross3d.cache.reader import CacheReader
    from ross3d.cache.store import SCENE_RECORD, open_scene, scene_path

    reader = CacheReader(cache)

    def read(scene: str, cold: bool, check: bool) -> float:
        if cold:
            drop_from_page_cache(scene_path(cache, scene))
        start = time.perf_counter()
        reader.load_scene(scene, "uniform", bf16_bits=True, check=check)
        return time.perf_counter() - start

    def paired(cold: bool, pairs: int) -> np.ndarray:
        """Seconds of (read without, read with the check), `pairs` pairs after one warm-up pair, the two reads of a
        pair in alternating order."""
        times = []
        for i in range(pairs + 1):
            first = bool(i % 2)
            one = read(scenes[i % len(scenes)], cold, first)
            other = read(scenes[i % len(scenes)], cold, not first)
            times.append((other, one) if first else (one, other))
        return np.array(times[1:])

    def edit_records(edit) -> None:
        """Rewrite every array's record entry with `edit(entry, value)`."""
        for scene in scenes:
            path, group = scene_path(cache, scene) / SCENE_RECORD, open_scene(cache, scene)
            record = json.loads(path.read_text())
            for key, entry in record["arrays"].items():
                edit(entry, group[key][...])
            path.write_text(json.dumps(record))

    def as_previous_version(entry: dict, value: np.ndarray) -> None:
        """The entry as the previous version wrote it: `crc32c`, and `finite_crc32c` where finiteness is attested."""
        del entry["xxh3"]
        entry["crc32c"] = array_checksum(value, "crc32c")
        if entry.pop(attestation("xxh3"), None):
            entry[attestation("crc32c")] = entry["crc32c"]

    # page-cache pairs are cheap and their difference is a few ms in reads of 15-25 ms: 4n of them
    warm, cold = paired(False, 4 * n), paired(True, n)
    edit_records(as_previous_version)
    crc32c = paired(False, 4 * n)
    edit_records(lambda entry, _: entry.pop(attestation("crc32c"), None))
    unattested = paired(False, 4 * n)
    return {"check": 1000 * float(np.median(warm[:, 1] - warm[:, 0])),
            "check, CRC32C": 1000 * float(np.median(crc32c[:, 1] - crc32c[:, 0])),
            "check, full pass": 1000 * float(np.median(unattested[:, 1] - unattested[:, 0])),
            "cold": 1000 * float(np.median(cold[:, 0])), "cold, checked": 1000 * float(np.median(cold[:, 1])),
            "page cache": 1000 * float(np.median(warm[:, 0]))}


def check_cost_table(ms: dict[str, float], n: int) -> None:
    """The first-read check against a read, per first read and over the first epoch of the real mix."""
    from rich.console import Console
    from rich.table import Table

    from scene_io import REAL_SCENES

    table = Table(title=f"first-read check of a 57 MB scene (medians of {n} cold, {4 * n} page-cache read pairs, "
                        f"1 thread): check {ms['check']:.1f} ms "
                        f"(XXH3, finiteness attested by the writer; {ms['check, CRC32C']:.1f} ms on the previous "
                        f"version's CRC32C records; {ms['check, full pass']:.1f} ms with the finiteness pass of "
                        f"older records; paired page-cache reads with - without), cold read "
                        f"{ms['cold']:.1f} ms ({ms['cold, checked']:.1f} ms checked), page-cache read "
                        f"{ms['page cache']:.1f} ms")
    for col in ("per first read / over the first epoch of the real mix", "vs cold read", "vs page-cache read",
                "target < 5% of the cold read"):
        table.add_column(col, justify="left" if col.startswith("per") else "right")

    def row(label: str, checked_share: float, check: str = "check") -> None:
        cold, warm = checked_share * ms[check] / ms["cold"], checked_share * ms[check] / ms["page cache"]
        table.add_row(label, f"{100 * cold:.1f}%", f"{100 * warm:.1f}%", "met" if cold < 0.05 else "NOT met")

    row("per first read of a scene (the check's own cost)", 1.0)
    row("per first read, a record of the previous version (CRC32C, attested)", 1.0, "check, CRC32C")
    row("per first read, a record without the writer's attestation (older caches: CRC32C + finiteness pass)", 1.0,
        "check, full pass")
    for order, reads in EPOCH_READS.items():
        per_rank = reads / RANKS
        # each rank's loader checks a scene on its first read in the run: at most min(scenes, reads) checks
        checked = min(REAL_SCENES, per_rank) / per_rank
        row(f"{order}: {per_rank / REAL_SCENES:.2f} reads per scene and rank, <= {100 * checked:.0f}% of reads "
            f"checked", checked)
    Console().print(table)
    Console().print("The check runs once per scene per run in each rank (its loader workers share the flags); later "
                    "epochs of the same run read without checks.")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples-original", type=int, default=6)
    ap.add_argument("--samples-cached", type=int, default=40)
    ap.add_argument("--data-wait", action="store_true", help="train the mid-size model, report the data wait")
    ap.add_argument("--prep", type=Path, help="PREP_DIR to reuse for --data-wait")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=8, help="loader workers for --data-wait")
    ap.add_argument("--check-cost", action="store_true", help="only the first-read check against cold reads")
    ap.add_argument("--io", action="store_true", help="reads, bytes and hit rate per epoch of both data orders")
    ap.add_argument("--io-scenes", type=int, default=6)
    ap.add_argument("--io-cold-samples", type=int, default=96)
    ap.add_argument("--run-length", type=int, default=8)
    ap.add_argument("--buffer", type=int, default=2)
    args = ap.parse_args(argv)
    if args.io:
        from scene_io import report

        with tempfile.TemporaryDirectory() as tmp:
            report(Path(tmp), args.io_scenes, args.io_cold_samples, args.run_length, args.buffer)
        return
    if args.data_wait:
        with tempfile.TemporaryDirectory() as tmp:
            prep = args.prep or build_train_inputs_prep(Path(tmp))
            data_wait_table(data_wait(prep, Path(tmp), args.steps, args.workers), args.workers)
        return
    torch.set_num_threads(1)  # both paths single-threaded: what one loader worker does
    if args.check_cost:
        from train_fixtures import SCENES, build_train_inputs

        with tempfile.TemporaryDirectory() as tmp:
            cache = build_train_inputs(Path(tmp), num_frames=32, siglip_width=1152)["cache"]
            check_cost_table(first_read_check_cost(cache, SCENES, args.samples_cached), args.samples_cached)
        return

    from diffusers import AutoencoderKL
    from rich.console import Console
    from rich.table import Table

    from ross3d.chat import ChatEncoder
    from ross3d.model.config import IMAGE_TOKEN_ID
    from ross3d.model.tokenizer import build_tokenizer
    from ross3d.train.config import TrainConfig
    from ross3d.train.data import MicroBatchDataset, load_text_samples
    from train_fixtures import SCENES, build_train_inputs

    with tempfile.TemporaryDirectory() as tmp:
        inputs = build_train_inputs(Path(tmp), num_frames=32, siglip_width=1152)
        config = TrainConfig()
        config.data.prep_dir, config.data.cache_dir = str(inputs["prep"]), str(inputs["cache"])
        tokenizer = build_tokenizer(["what is in the room"], 300)
        samples = load_text_samples(config.data, ChatEncoder(tokenizer, IMAGE_TOKEN_ID))
        by_scene = [[i for i, s in enumerate(samples) if s.scene_id == sc] for sc in SCENES]
        alternating = [idx for pair in zip(*by_scene) for idx in pair]

        config.data.scene_cache = 1
        cold = MicroBatchDataset(samples, config.data, tokenizer.pad_token_id)
        cold_rate = time_it(lambda i: cold[[alternating[i % len(alternating)]]], args.samples_cached)
        warm = MicroBatchDataset(samples, config.data, tokenizer.pad_token_id)
        warm_rate = time_it(lambda i: warm[[by_scene[0][i % len(by_scene[0])]]], args.samples_cached)
        check_ms = first_read_check_cost(inputs["cache"], SCENES, args.samples_cached)

        vae = AutoencoderKL.from_pretrained(str(inputs["vae"])).eval()
        scenes = [original_scene(inputs["prep"], sc) for sc in SCENES]
        rng = np.random.default_rng(0)
        orig_rate = time_it(lambda i: original_sample(scenes[i % len(scenes)], vae, rng), args.samples_original)

    table = Table(title="trainer data path, samples/s per process (CPU, 1 thread), same 2 scenes, 32 views")
    for col in ("path", "samples/s", "vs original"):
        table.add_column(col, justify="right" if col != "path" else "left")
    table.add_row("original per-sample (decode 32 JPEG + 32 PNG, unproject, SigLIP prep, VAE BEV + 8 views)",
                  f"{orig_rate:.2f}", "1.0x")
    table.add_row("ours, cached, cold (every sample reads its scene block)", f"{cold_rate:.2f}",
                  f"{cold_rate / orig_rate:.1f}x")
    table.add_row("ours, cached, warm (scene block in the loader's cache)", f"{warm_rate:.2f}",
                  f"{warm_rate / orig_rate:.1f}x")
    Console().print(table)
    check_cost_table(check_ms, args.samples_cached)


if __name__ == "__main__":
    main()
