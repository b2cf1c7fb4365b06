"""`make demo`: the whole pipeline on the embedded synthetic dataset, as the real `ross3d` commands a user would type.

Each stage runs as a subprocess (so the demo exercises the installed CLI exactly), is timed, and is printed with its
command line. The run ends with DEMO_DIR/summary.json (stage seconds, metrics beside the trivial baselines, the
benchmarks where the trained model beats them, first and last training loss, the pictures worth looking at) and a
printed summary. Finished stages resume instead of redoing their work, so a second `make demo` is quick.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")


def _stages(out: Path) -> list[tuple[str, list[str]]]:
    data, prep, cache, enc = out / "data", out / "prep", out / "cache", out / "encoders"
    bench = data / "benchmarks"
    final = out / "checkpoints" / "final"
    # continue a checkpointed demo run; otherwise start training afresh (replacing a run killed before its first save)
    resume = ["--resume"] if (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*")) \
        else ["--overwrite"]
    return [
        ("synth", ["synth", "scannet", str(data), "--scenes", "3", "--seed", "0"]),
        ("encoders", ["synth", "encoders", str(enc)]),
        ("prep scannet", ["prep", "scannet", str(data / "scans"), str(prep), "--num-frames", "4"]),
        ("prep qa", ["prep", "qa", str(prep), "--scanqa", str(bench / "scanqa"), "--sqa3d", str(bench / "sqa_task"),
                     "--scanrefer", str(bench / "scanrefer"), "--multi3drefer", str(bench / "multi3drefer"),
                     "--label-map", str(data / "scannet_metadata" / "scannetv2-labels.combined.tsv")]),
        ("inspect", ["inspect", "scene", str(prep), "scene0000_00", "--out", str(out / "inspect_scene0000_00.png")]),
        ("cache-latents", ["cache-latents", str(prep), str(cache), "--vae", str(enc / "tiny-vae"),
                           "--vision-tower", str(enc / "tiny-siglip")]),
        ("verify", ["verify", str(cache)]),
        ("train", ["train", "configs/tiny.yaml", "--output-dir", str(out), *resume]),
        ("visualize", ["visualize", str(final), "--cache", str(cache), "--samples", str(prep / "samples.parquet"),
                       "--scene", "scene0000_00", "--vae", str(enc / "tiny-vae"), "--steps", "20",
                       "--out", str(out / "reconstruction_scene0000_00.png")]),
        ("eval", ["eval", "run", "--benchmark", "all", "--checkpoint", str(final), "--cache", str(cache),
                  "--samples", str(prep / "samples.parquet"), "--out", str(out / "results"), "--restart"]),
    ]


def run_stage(name: str, args: list[str]) -> float:
    cmd = [sys.executable, "-m", "ross3d_cli.app", *args]
    console.rule(f"[bold]{name}")
    console.print(f"$ ross3d {shlex.join(args)}", style="cyan", highlight=False)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        console.print(f"[bold red]stage {name} failed (exit {proc.returncode})")
        raise SystemExit(proc.returncode)
    return seconds


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def summarize(out: Path, stage_seconds: dict[str, float]) -> dict:
    """summary.json (README.md, `make demo`): metrics, baselines, beats_baseline, losses and picture paths."""
    from ross3d.eval.baselines import HEADLINE

    results = out / "results"
    metrics = {b: _read_json(results / b / "METRICS.json") for b in BENCHMARKS}
    baseline = {b: _read_json(results / b / "BASELINE.json") for b in BENCHMARKS}
    beats = [b for b in BENCHMARKS if metrics[b][HEADLINE[b]] > baseline[b][HEADLINE[b]]]
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    window = max(1, min(10, len(losses) // 4))  # steps alternate between tasks: average a few
    return {
        "stage_seconds": stage_seconds,
        "metrics": metrics,
        "baseline": baseline,
        "headline_metric": HEADLINE,
        "beats_baseline": beats,
        "loss_first": sum(losses[:window]) / window,
        "loss_last": sum(losses[-window:]) / window,
        "train_steps": len(losses),
        "pictures": {
            "bev_previews": sorted(str(p) for p in (out / "prep" / "previews").glob("*_bev.png")),
            "inspect_scene": str(out / "inspect_scene0000_00.png"),
            "loss_curve": str(out / "loss_curve.png"),
            "reconstruction": str(out / "reconstruction_scene0000_00.png"),
        },
    }


def print_summary(summary: dict) -> None:
    table = Table(title="ross3d demo: stages")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, sec in summary["stage_seconds"].items():
        table.add_row(name, f"{sec:.1f}")
    console.print(table)
    table = Table(title="trained tiny model vs trivial baseline (synthetic benchmarks)")
    for col in ("benchmark", "metric (%)", "model", "baseline", "beats"):
        table.add_column(col, justify="right" if col in ("model", "baseline") else "left")
    for bench in BENCHMARKS:
        key = summary["headline_metric"][bench]
        table.add_row(bench, key, f"{summary['metrics'][bench][key]:.1f}", f"{summary['baseline'][bench][key]:.1f}",
                      "yes" if bench in summary["beats_baseline"] else "no")
    console.print(table)
    console.print(f"training loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f} "
                  f"over {summary['train_steps']} steps")
    for name, path in summary["pictures"].items():
        console.print(f"{name}: {', '.join(path) if isinstance(path, list) else path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stage_seconds = {name: round(run_stage(name, cmd), 2) for name, cmd in _stages(out)}
    summary = summarize(out, stage_seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    console.print(f"summary: {out / 'summary.json'}")
    if not summary["beats_baseline"]:
        console.print("[bold red]the trained model beats no baseline: the pipeline did not learn")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
