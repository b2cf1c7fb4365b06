"""Benchmark: one Ross3D training step (forward + backward) with the labelled-only LM head vs the original's
full-sequence LM head, for the tiny preset and a mid-size config with Qwen2's real 151,936-token vocabulary.

Each (config, head) pair runs in its own process, so peak memory is not shared between runs. On CUDA the peak is
`torch.cuda.max_memory_allocated` during the steps minus the memory allocated before them (model and batch). On
CPU it is the highest resident set sampled every millisecond during the steps minus the resident set before them;
the workers set `MALLOC_MMAP_THRESHOLD_` so that large tensors are returned to the OS when freed and the resident
set follows live memory. Prints one side-by-side table.

`--lora` (issue 17) compares full fine-tuning with LoRA (`model.lora` defaults, every part training) on one config:
trainable parameters, optimizer-state bytes (the AdamW state tensors after a step), peak memory and the time of one
optimizer step (forward, backward, AdamW), then prints the computed 7B memory of one GPU (`memory_7b`).
`--demo DIR` trains the tiny preset on a demo folder (DIR/prep, DIR/cache as `make demo` writes them) for a fixed
step budget with LoRA and with full fine-tuning and prints the losses.

    .venv/bin/python bench/model_step.py [--device cpu|cuda] [--steps 3] [--configs tiny,mid,7b-2layer]
    .venv/bin/python bench/model_step.py --lora [--configs mid] [--demo runs/demo --demo-steps 12]
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


def lora_worker(name: str, lora: bool, device: str, steps: int) -> dict:
    """Warm-up + `steps` optimizer steps (forward, backward, AdamW) with every part training, the LLM fully or
    through LoRA; returns trainable parameters, AdamW state bytes, peak memory and the median step time."""
    import torch

    from ross3d.model.config import preset
    from ross3d.model.ross3d import Ross3D
    from ross3d.model.synthetic import random_batch
    from ross3d.train.config import TRAIN_PARTS, LoraOptions, OptimConfig
    from ross3d.train.lora import add_lora
    from ross3d.train.optimizer import build_optimizer
    from ross3d.train.parts import freeze_parts, trainable_parameters

    spec = CONFIGS[name]
    torch.manual_seed(0)
    config = preset(spec["preset"], ground_token_id=1, coord_token_id=2, **spec["overrides"])  # trainable rows
    model = Ross3D(config)
    freeze_parts(model, list(TRAIN_PARTS))
    if lora:
        add_lora(model, LoraOptions(), seed=0)
    model = model.to(device).train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(params, OptimConfig(lr=1e-4), {})
    batch = {k: v.to(device) for k, v in random_batch(config, spec["batch"], text_len=spec["text"]).items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(global_step: int) -> float:
        start = time.perf_counter()
        model(batch, global_step=global_step)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    with RssPeak() as rss:
        step(1)  # warm-up; allocates the optimizer state
        times = [step(k) for k in range(steps)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss.peak
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    return {"trainable": trainable_parameters(model), "total": sum(p.numel() for p in model.parameters()),
            "state_mb": state / 2**20, "weights_mb": base, "peak_mb": peak, "time_s": statistics.median(times)}


def memory_7b(text: int = 160) -> list[tuple[str, float, float, str]]:
    """Computed (not measured) peak GPU memory of one 7B training step on one GPU, bf16, ZeRO-2, micro-batch 1,
    gradient checkpointing: -> [(row, trainable parameters, GiB, what the sum holds)].

    Parameter counts come from the 7b preset built on the meta device; LoRA adds r x (in + out) per targeted
    projection and the two token rows of the embedding and lm_head. Per parameter: 2 bytes of bf16 weights; per
    trainable parameter 2 (bf16 gradient) + 4 (fp32 master copy) + 4 (fp32 gradient of the step) + 8 (AdamW's two
    fp32 moments; 2 with bitsandbytes' 8-bit AdamW); with the optimizer offloaded only the bf16 weights and gradients
    stay on the GPU. Activations: the checkpointed input of every decoder layer (L x hidden x 2 bytes each) plus
    one layer recomputed in backward, counted twice (values and their gradients): q, k, v, o, the MLP's gate, up
    and product (L x intermediate each) and, with LoRA, the dropout copies of the projections' inputs. L = the
    spliced sequence (32 frames x 14 x 15 visual tokens + `text`). Not counted: the CUDA context and allocator
    slack (about 1 GiB), the denoiser's and the labelled-only LM head's activations (tens of MB)."""
    import re

    import torch

    from ross3d.model.config import preset
    from ross3d.model.ross3d import Ross3D
    from ross3d.train.config import LoraOptions

    config = preset("7b")
    with torch.device("meta"):
        model = Ross3D(config)
    total = sum(p.numel() for p in model.parameters())
    llm = sum(p.numel() for p in model.llm.parameters())
    lora = LoraOptions()
    pattern = re.compile(rf"model\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(lora.targets)})")
    adapters = sum(lora.r * (m.in_features + m.out_features) for n, m in model.llm.named_modules()
                   if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n))
    adapters += 2 * 2 * config.hidden_size  # <ground>/<coord> rows of embed_tokens and lm_head
    seq, d, ffn, kv = config.visual_len + text, config.hidden_size, config.intermediate_size, config.num_kv_heads
    kv_dim = d // config.num_heads * kv
    layer = 2 * seq * (2 * d + 2 * kv_dim + 3 * ffn)
    checkpoints = config.num_layers * seq * d * 2
    dropout = 2 * seq * (6 * d + ffn)  # q, k, v, o, gate, up inputs (hidden wide) and down's (intermediate wide)
    gib = 2**30
    rows = []
    for row, trainable, moments, offload, with_lora in (
            ("full FT, ZeRO-2, AdamW", total, 8, False, False),
            ("full FT, ZeRO-2, AdamW offloaded to CPU", total, 8, True, False),
            ("LoRA, AdamW", total - llm + adapters, 8, False, True),
            ("LoRA, 8-bit AdamW", total - llm + adapters, 2, False, True),
            ("LoRA, AdamW offloaded to CPU (configs/ross3d_7b_lora_1gpu.yaml)", total - llm + adapters, 8, True,
             True)):
        weights = 2 * (total + (adapters if with_lora else 0))
        optim = trainable * (2 + (0 if offload else 8 + moments))
        act = checkpoints + layer + (dropout if with_lora else 0)
        rows.append((row, trainable, (weights + optim + act) / gib,
                     f"weights {weights / gib:.1f} + grads/optimizer {optim / gib:.1f} + activations {act / gib:.1f}"))
    return rows


def lora_main(args) -> None:
    """Full fine-tuning against LoRA, measured on `args.configs`, then the computed 7B rows (and `--demo`)."""
    for name in args.configs.split(","):
        rows = {}
        for mode in ("full", "lora"):
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--lora-worker", name, mode, "--device", args.device,
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True, env=env)
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        mem = "CUDA allocated" if args.device == "cuda" else "RSS"
        print(f"{name} config on {args.device}: full fine-tuning vs LoRA (r 128, alpha 256, every part training)")
        print(f"{'':<6} {'trainable':>13} {'of':>13} {'AdamW state':>12} {'peak ' + mem:>14} {'over weights':>13} "
              f"{'step':>8}")
        for mode, r in rows.items():
            print(f"{mode:<6} {r['trainable']:>13,} {r['total']:>13,} {r['state_mb']:>9.1f} MB "
                  f"{r['peak_mb']:>11.0f} MB {r['peak_mb'] - r['weights_mb']:>10.0f} MB {r['time_s']:>7.2f}s")
    print("\n7b preset, one GPU, bf16, micro-batch 1, gradient checkpointing: COMPUTED "
          "(bench/one_gpu_7b.py measures the LoRA rows on a GPU)")
    for row, trainable, total, parts in memory_7b():
        print(f"  {row:<64} trainable {trainable / 1e6:>7.1f} M  {total:>6.1f} GiB  ({parts})")
    if args.demo:
        demo_losses(args.demo, args.demo_steps)


def demo_losses(demo: str, steps: int) -> None:
    """The tiny preset on DEMO/prep + DEMO/cache for `steps` optimizer steps, LoRA and full fine-tuning."""
    import tempfile
    from pathlib import Path

    from ross3d.train.config import load_train_config
    from ross3d.train.loop import train

    root = Path(__file__).resolve().parents[1]
    for name, extra in (("LoRA", ["model.lora={}", "optim.lr=0.002"]), ("full FT", [])):
        with tempfile.TemporaryDirectory() as out:
            config = load_train_config(root / "configs/tiny.yaml", [
                f"data.prep_dir={demo}/prep", f"data.cache_dir={demo}/cache", f"output_dir={out}",
                f"max_steps={steps}", "save_every=0", "tensorboard=false", "data.num_workers=0",
                "data.tasks=[scanqa]", "data.grouping=shuffle", *extra])
            result = train(config)
            print(f"{name:<8} demo data, {steps} steps: loss {result.first_loss:.3f} -> {result.last_loss:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma list of {sorted(CONFIGS)}")
    parser.add_argument("--lora", action="store_true", help="full fine-tuning vs LoRA, and the 7B memory")
    parser.add_argument("--demo", help="with --lora: a demo folder (prep/, cache/) to train on")
    parser.add_argument("--demo-steps", type=int, default=12)
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "HEAD"), help=argparse.SUPPRESS)
    parser.add_argument("--lora-worker", nargs=2, metavar=("CONFIG", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1] == "labelled", args.device, args.steps)))
        return
    if args.lora_worker:
        print(json.dumps(lora_worker(args.lora_worker[0], args.lora_worker[1] == "lora", args.device, args.steps)))
        return
    if args.lora:
        lora_main(args)
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
