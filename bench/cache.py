"""Benchmark of the view-encoding path of `ross3d cache-latents` against the original's way (a per-image loop:
PIL decode and resize, one `vae.encode` per image), on the same JPEG frames, for a tiny and for the full-size FLUX
VAE architecture (random weights built from the FLUX.1-dev config). Prints one table: images per second of each
path, speed-up, and the largest difference of the posterior means; on CUDA also the fraction of the GPU's bf16
peak reached by the full-size VAE; and the cache size per scene for the contract's full shapes.

    .venv/bin/python bench/cache.py [--device cpu|cuda] [--images-tiny 64] [--images-full 8] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ross3d.cache import tiny
from ross3d.cache.encoders import VaeEncoder
from ross3d.cache.preprocess import decode_view, to_unit_range, vae_view_input

DEPTH_SIZE = (640, 480)  # ScanNet depth: gives the 512x384 resize
COLOR_SIZE = (1296, 968)  # ScanNet colour JPEGs
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0}  # dense, no sparsity


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """Smooth random colour frames at ScanNet size, JPEG-encoded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (COLOR_SIZE[1] // 16, COLOR_SIZE[0] // 16, 3), dtype=np.uint8)
        out.append(cv2.imencode(".jpg", cv2.resize(small, COLOR_SIZE, interpolation=cv2.INTER_CUBIC))[1].tobytes())
    return out


def per_image_loop(vae, jpegs: list[bytes], device: torch.device) -> np.ndarray:
    """The original's way: per image, PIL resize/crop, SigLIP normalisation, bilinear 216, one encode call."""
    means = []
    with torch.no_grad():
        for jpeg in jpegs:
            image = Image.open(io.BytesIO(jpeg)).convert("RGB")
            width = int(DEPTH_SIZE[0] * 384 / DEPTH_SIZE[1])
            image = image.resize((width, 384), resample=Image.BICUBIC).crop(((width - 384) // 2, 0,
                                                                             (width - 384) // 2 + 384, 384))
            x = (torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None] - 0.5) / 0.5
            x = F.interpolate(x.clamp(-1, 1), size=(216, 216), mode="bilinear").to(device)
            means.append(vae.encode(x).latent_dist.mean.float().cpu())
    return torch.cat(means).numpy()


def batched_path(encoder: VaeEncoder, jpegs: list[bytes], batch_size: int, workers: int) -> np.ndarray:
    """Our path: decoding and resizing in worker threads, overlapped with batched encoder calls."""
    def encode(batch):  # as ross3d.cache.encode: uint8 to the device, normalisation and resize there
        views = to_unit_range(torch.from_numpy(np.stack(batch)).to(encoder.device))
        return encoder.encode(vae_view_input(views))[0]

    means, batch = [], []
    with ThreadPoolExecutor(workers) as pool:
        for view in pool.map(lambda j: decode_view(j, *DEPTH_SIZE), jpegs):
            batch.append(view)
            if len(batch) == batch_size:
                means.append(encode(batch))
                batch = []
        if batch:
            means.append(encode(batch))
    return torch.cat(means).numpy()


def timed(fn, *args) -> tuple[float, np.ndarray]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def encoder_flops(vae, size: int = 216) -> float:
    """FLOPs of one encoder forward at size x size (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        vae.encode(torch.zeros(1, 3, size, size, device=next(vae.parameters()).device))
    return float(counter.get_total_flops())


def bf16_peak() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v * 1e12 for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def scene_size_mb(views: int = 32, bev: int = 432, objects: int = 40, vision: bool = True) -> dict[str, float]:
    """Stored bytes per scene and strategy with the contract's full shapes (latents fp32, features bf16)."""
    latent = views * 2 * 16 * 27 * 27 * 4
    sizes = {"view latents": latent, "BEV latents (per scene)": 2 * 16 * (bev // 8) ** 2 * 4,
             "voxels": views * 14 * 14 * 3 * 2, "membership (raw)": objects * views * 27 * 27}
    if vision:
        sizes["SigLIP features"] = views * 729 * 1152 * 2
    return {k: v / 1e6 for k, v in sizes.items()}


def run_case(name, vae_dir, jpegs, device, batch_size, workers, dtype, repeats):
    """Both paths on the same frames, alternating, best of `repeats` (the machine may be shared)."""
    from diffusers import AutoencoderKL

    encoder = VaeEncoder(vae_dir, device, dtype)
    baseline = AutoencoderKL.from_pretrained(vae_dir).float().eval().to(device)
    batched_path(encoder, jpegs[:batch_size], batch_size, workers)  # warm-up of both paths
    per_image_loop(baseline, jpegs[:1], device)
    t_loop = t_ours = float("inf")
    for _ in range(repeats):
        t, ref = timed(per_image_loop, baseline, jpegs, device)
        t_loop = min(t_loop, t)
        t, ours = timed(batched_path, encoder, jpegs, batch_size, workers)
        t_ours = min(t_ours, t)
    return {"name": name, "n": len(jpegs), "loop": len(jpegs) / t_loop, "ours": len(jpegs) / t_ours,
            "diff": float(np.abs(ours - ref).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images-tiny", type=int, default=64)
    parser.add_argument("--images-full", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/tmp/ross3d_bench_cache")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    full_dir = f"{args.dir}/full_vae"
    tiny.save_full_flux_vae(full_dir)
    tiny_dir = tiny.save_tiny_vae(f"{args.dir}/tiny_vae")
    jpegs = make_jpegs(max(args.images_tiny, args.images_full))
    rows = [run_case("tiny FLUX-shaped VAE", tiny_dir, jpegs[:args.images_tiny], device, args.batch_size,
                     args.workers, "fp32", args.repeats),
            run_case("full FLUX.1-dev VAE (random)", full_dir, jpegs[:args.images_full], device, args.batch_size,
                     args.workers, "fp32", max(1, args.repeats - 1))]
    print(f"\nview encoding, 216x216 from {COLOR_SIZE[0]}x{COLOR_SIZE[1]} JPEGs, device {device}, "
          f"batch {args.batch_size}, {args.workers} decode threads, fp32, {torch.get_num_threads()} torch threads, "
          f"best of {args.repeats} (full VAE: {max(1, args.repeats - 1)})")
    print(f"{'encoder':<30} {'images':>6} {'per-image loop img/s':>21} {'ours img/s':>11} {'speed-up':>9} "
          f"{'max |mean diff|':>16}")
    for r in rows:
        print(f"{r['name']:<30} {r['n']:>6} {r['loop']:>21.2f} {r['ours']:>11.2f} {r['ours'] / r['loop']:>8.2f}x "
              f"{r['diff']:>16.2e}")
    if device.type == "cuda":
        encoder = VaeEncoder(full_dir, device, "bf16")
        n = max(args.images_full, 4 * args.batch_size)
        batched_path(encoder, jpegs[:args.batch_size], args.batch_size, args.workers)
        views = vae_view_input(to_unit_range(torch.from_numpy(np.stack(
            [decode_view(j, *DEPTH_SIZE) for j in jpegs[:args.batch_size]])).to(device)))
        t, _ = timed(lambda: [encoder.encode(views) for _ in range(n // args.batch_size)])
        rate = (n // args.batch_size) * args.batch_size / t
        t_e2e, _ = timed(batched_path, encoder, (jpegs * (n // len(jpegs) + 1))[:n], args.batch_size, args.workers)
        flops, peak = encoder_flops(encoder.vae), bf16_peak()
        frac = f"{rate * flops / peak:.1%} of {peak / 1e12:.0f} TFLOPS" if peak else "peak unknown"
        print(f"\nGPU {torch.cuda.get_device_name()}: full VAE bf16 autocast + channels_last, batch {args.batch_size}: "
              f"{rate:.1f} img/s encoder only ({flops / 1e9:.0f} GFLOP/img, {frac}); {n / t_e2e:.1f} img/s "
              f"with JPEG decode")
    sizes = scene_size_mb()
    print("\ncache size per scene and strategy (V=32, BEV 432, 40 objects): " +
          ", ".join(f"{k} {v:.2f} MB" for k, v in sizes.items()) + f"; total {sum(sizes.values()):.1f} MB")


if __name__ == "__main__":
    main()
