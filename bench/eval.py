"""Benchmark: `ross3d eval run` throughput in samples/s (answering only: model loading and scoring excluded; the
number each run prints, samples answered by all ranks over the wall time of answering).

CPU (default): the tiny random-weight model on two synthetic scenes (the eval test inputs, tests/eval_fixtures.py),
all five benchmarks, `--limit` samples each: one process with one thread, one process with two threads, and two
ranks under torchrun with one thread each.

GPU (`--gpu`): the 7b preset with random weights on a cache at the contract's sizes (32 views, 1152-wide features
from a one-layer SigLIP-shaped tower, tiny FLUX-shaped VAE), ScanQA (generation, `--max-new-tokens`) and ScanRefer
(one forward) at batch sizes 1, 8 and 32 in one process.

Every run is `ross3d eval run --restart --no-baseline` in its own process. Prints one table.

    .venv/bin/python bench/eval.py [--limit 12] [--max-new-tokens 8]
    python bench/eval.py --gpu [--limit 64] [--max-new-tokens 32] [--prep PREP_DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}


def cpu_inputs(root: Path) -> dict[str, Path]:
    from eval_fixtures import build_eval_inputs
    from ross3d.synth.scenes import generate_synthetic_dataset

    generate_synthetic_dataset(root / "synth", n_scenes=2, n_frames=60, seed=0, color_size=(160, 120),
                               depth_size=(80, 60))
    return build_eval_inputs(root / "synth", root)


def gpu_inputs(root: Path, prep: Path | None) -> dict[str, Path]:
    """The contract-sized inputs (bench/contract_inputs.py; PREP reused when given) and a random 7b-preset model."""
    from contract_inputs import contract_cache, contract_prep
    from ross3d.model.checkpoint import save_model
    from ross3d.train.config import TrainConfig
    from ross3d.train.model_setup import build_model

    prep = prep or contract_prep(root)
    cache = contract_cache(prep, root)
    config = TrainConfig()
    config.data.prep_dir, config.data.cache_dir, config.model.preset = str(prep), str(cache), "7b"
    model, tokenizer = build_model(config, root / "tokenizer")
    return {"prep": prep, "cache": cache, "checkpoint": save_model(model, root / "model", tokenizer)}


def run(inputs: dict, out: Path, extra: list[str], ranks: int, threads: int) -> float:
    """samples/s that one `ross3d eval run` reports."""
    args = ["eval", "run", "--checkpoint", str(inputs["checkpoint"]), "--cache", str(inputs["cache"]),
            "--samples", str(inputs["prep"] / "samples.parquet"), "--out", str(out), "--restart", "--no-baseline",
            *extra]
    launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(ranks)] \
        if ranks > 1 else [sys.executable]
    done = subprocess.run([*launcher, "-m", "ross3d_cli.app", *args], capture_output=True, text=True,
                          env={**CLEAN_ENV, "OMP_NUM_THREADS": str(threads), "COLUMNS": "200"})
    if done.returncode:
        sys.exit(f"eval run failed:\n{done.stderr[-3000:]}")
    return float(re.search(r"\(([\d.]+) samples/s\)", done.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="7b preset on cuda, batch sizes 1/8/32")
    parser.add_argument("--limit", type=int, default=None, help="samples per benchmark (default 12; GPU 64)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 8 (GPU 32)")
    parser.add_argument("--prep", type=Path, help="with --gpu: a folder bench/contract_inputs.py prepared (skips prep)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    limit = args.limit or (64 if args.gpu else 12)
    tokens = args.max_new_tokens or (32 if args.gpu else 8)
    table = Table(title=f"ross3d eval run, {limit} samples per benchmark, --max-new-tokens {tokens}")
    for col in ("configuration", "samples/s"):
        table.add_column(col, justify="right" if col == "samples/s" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = ["--limit", str(limit), "--max-new-tokens", str(tokens)]
        if args.gpu:
            inputs = gpu_inputs(root, args.prep)
            for bs in (1, 8, 32):
                for bench in ("scanqa", "scanrefer"):
                    rate = run(inputs, root / "out", [*common, "--benchmark", bench, "--batch-size", str(bs),
                                                      "--device", "cuda"], 1, 8)
                    table.add_row(f"7b preset, {bench}, batch size {bs}", f"{rate:.2f}")
        else:
            inputs = cpu_inputs(root)
            cpu = [*common, "--device", "cpu", "--batch-size", "4"]
            for label, ranks, threads in (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                                          ("2 ranks (torchrun, gloo), 1 thread each", 2, 1)):
                rate = run(inputs, root / "out", cpu, ranks, threads)
                table.add_row(f"tiny, all five benchmarks: {label}", f"{rate:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
