"""Benchmark: the one-GPU 7B LoRA recipe (`configs/ross3d_7b_lora_1gpu.yaml`) measured on a GPU against the peak
memory `bench/model_step.py` computes for it.

Each variant is `ross3d train` itself (`ross3d.train.loop.train`: DeepSpeed ZeRO-2, bf16, gradient checkpointing,
LoRA r 128 on every projection) on the 7b preset with random weights (`model.init` null: the sizes are the
release's, the values are not), over contract-sized synthetic inputs (bench/contract_inputs.py), with
`grad_accum 1` so that every micro-step is an optimizer step. It stops after `--steps` optimizer steps, before the
export. Measured: `torch.cuda.max_memory_allocated` over the run (the computed figure's scope: it leaves out the
CUDA context and the allocator's slack), `max_memory_reserved` (what the allocator held), and the median optimizer
step after the first. Each variant runs in its own process. Prints one table.

    python bench/one_gpu_7b.py [--steps 4] [--prep PREP_DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
VARIANTS = {  # name -> (overrides, the memory_7b row it is computed as)
    "LoRA, AdamW offloaded to CPU (the config)": ([], "LoRA, AdamW offloaded to CPU"),
    "LoRA, AdamW on the GPU": (["deepspeed_config=null"], "LoRA, AdamW"),
}


class StopAfter(Exception):
    """Raised from the metrics callback once the measured steps are done (skips the 15 GB export)."""


def worker(prep: str, cache: str, out: str, steps: int, overrides: list[str]) -> dict:
    import torch

    from ross3d.train.config import load_train_config
    from ross3d.train.loop import train

    config = load_train_config(ROOT / "configs/ross3d_7b_lora_1gpu.yaml", [
        f"data.prep_dir={prep}", f"data.cache_dir={cache}", f"output_dir={out}", "model.init=null", "grad_accum=1",
        f"max_steps={steps + 1}", "save_every=0", "log_every=1", "tensorboard=false", *overrides])
    stamps: list[float] = []

    def on_record(record: dict) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) == steps + 1:
            raise StopAfter

    try:
        train(config, on_record=on_record)
    except StopAfter:
        pass
    gib = 2**30
    return {"allocated_gib": torch.cuda.max_memory_allocated() / gib,
            "reserved_gib": torch.cuda.max_memory_reserved() / gib,
            "step_s": statistics.median(b - a for a, b in zip(stamps, stamps[1:]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="measured optimizer steps after the first")
    parser.add_argument("--prep", type=Path, help="a folder bench/contract_inputs.py prepared (skips prep)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        prep, cache, out, steps, overrides = args.worker
        print(json.dumps(worker(prep, cache, out, int(steps), json.loads(overrides))))
        return
    from contract_inputs import contract_cache, contract_prep
    from model_step import memory_7b

    computed = {row.split(" (")[0]: gib for row, _, gib, _ in memory_7b()}
    print(f"{'7B one GPU, bf16, micro-batch 1, checkpointing':<46} {'computed':>9} {'allocated':>10} "
          f"{'reserved':>9} {'step':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prep = args.prep or contract_prep(root)
        cache = contract_cache(prep, root)
        for k, (name, (overrides, row)) in enumerate(VARIANTS.items()):
            done = subprocess.run([sys.executable, __file__, "--worker", str(prep), str(cache), str(root / f"run{k}"),
                                   str(args.steps), json.dumps(overrides)], capture_output=True, text=True)
            if done.returncode:
                errors = [line for line in done.stderr.splitlines() if "Error" in line] or ["?"]
                print(f"{name:<46} failed: {errors[-1]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name:<46} {computed[row]:>6.1f} GiB {r['allocated_gib']:>6.1f} GiB {r['reserved_gib']:>5.1f} GiB "
                  f"{r['step_s']:>7.2f}s")


if __name__ == "__main__":
    main()
