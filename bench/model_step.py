"""Benchmark: one Ross3D training step (forward + backward) with the labelled-only LM head vs the original's
full-sequence LM head, for the tiny preset and a mid-size config with Qwen2's real 151,936-token vocabulary.

Each (config, head) pair runs in its own process, so peak memory is not shared between runs. On CUDA the peak is
`torch.cuda.max_memory_allocated` during the steps minus the memory allocated before them (model and batch). On
CPU it is the highest resident set sampled every millisecond during the steps minus the resident set before them;
the workers set `MALLOC_MMAP_THRESHOLD_` so that large tensors are returned to the OS when freed and the resident
set follows live memory. Prints one side-by-side table.

    .venv/bin/python bench/model_step.py [--device cpu|cuda] [--steps 3] [--configs tiny,mid,7b-2layer]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import os
import subprocess
import sys
import threading
import time

CONFIGS = {
    "tiny": dict(preset="tiny", overrides={}, batch=2, text=48),
    "mid": dict(preset="tiny", batch=1, text=160, overrides=dict(
        vocab_size=151936, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=2, intermediate_size=1408,
        vision_dim=1152, n_frames=8, denoiser_dim=256, denoiser_depth=2, denoiser_heads=4)),
    # the 7b preset's widths, vocabulary, 32 frames and denoiser, with 2 of its 28 layers (for a GPU)
    "7b-2layer": dict(preset="7b", batch=1, text=160, overrides=dict(num_layers=2)),
}
DEFAULT_CONFIGS = ("tiny", "mid")


def _rss_mb() -> float:
    """Current resident set of this process in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class RssPeak:
    """Samples the resident set every millisecond in a thread; `.peak` is the highest value seen."""

    def __enter__(self) -> "RssPeak":
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def worker(name: str, labelled_only: bool, device: str, steps: int) -> dict:
    """Run warm-up + `steps` training steps in this process; return timings and peak memory."""
    import torch

    from ross3d.model.config import preset
    from ross3d.model.ross3d import Ross3D
    from ross3d.model.synthetic import random_batch

    spec = CONFIGS[name]
    torch.manual_seed(0)
    config = preset(spec["preset"], lm_labelled_only=labelled_only, **spec["overrides"])
    model = Ross3D(config).to(device).train()
    batch = {k: v.to(device) for k, v in random_batch(config, spec["batch"], text_len=spec["text"]).items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(global_step: int) -> float:
        start = time.perf_counter()
        model(batch, global_step=global_step)["loss"].backward()
        model.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    step(1)  # warm-up (not a masking step)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    with RssPeak() as rss:
        times = [step(k) for k in range(steps)]  # step 0 masks views (every 4th optimizer step), the others not
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss.peak
    seq = batch["input_ids"].shape[1] - 1 + config.visual_len
    return {"time_s": statistics.median(times), "peak_mb": peak - base, "seq": seq, "vocab": config.vocab_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma list of {sorted(CONFIGS)}")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "HEAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1] == "labelled", args.device, args.steps)))
        return
    names = args.configs.split(",")
    rows = {}
    for name in names:
        for head in ("full", "labelled"):
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--worker", name, head, "--device", args.device,
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True, env=env)
            rows[name, head] = json.loads(out.stdout.strip().splitlines()[-1])
    mem = "peak step memory (MB, CUDA allocated)" if args.device == "cuda" else "peak step memory (MB, RSS growth)"
    print(f"Ross3D training step on {args.device}: full-sequence LM head (original) vs labelled-only LM head")
    print(f"{'config':<9} {'seq x vocab':>16} | {'time full':>10} {'time labelled':>14} {'speedup':>8} | "
          f"{'mem full':>9} {'mem labelled':>13} {'saved':>9}   [{mem}]")
    for name in names:
        full, lab = rows[name, "full"], rows[name, "labelled"]
        print(f"{name:<9} {full['seq']:>7} x {full['vocab']:>6} | {full['time_s']:>9.3f}s {lab['time_s']:>13.3f}s "
              f"{full['time_s'] / lab['time_s']:>7.2f}x | {full['peak_mb']:>9.0f} {lab['peak_mb']:>13.0f} "
              f"{full['peak_mb'] - lab['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
