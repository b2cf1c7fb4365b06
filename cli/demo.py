"""`make demo`: the whole pipeline on the embedded synthetic dataset, as the real `ross3d` commands a user would type.

Each stage runs as a subprocess (so the demo exercises the installed CLI exactly), is timed, and is printed with its
command line; the run ends with DEMO_DIR/summary.json and a printed summary. Stages whose outputs are complete are
not recomputed by the commands themselves (they resume), so a second `make demo` is quick.
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


def _stages(out: Path) -> list[tuple[str, list[str]]]:
    data, prep, cache, enc = out / "data", out / "prep", out / "cache", out / "encoders"
    bench = data / "benchmarks"
    return [
        ("synth", ["synth", "scannet", str(data), "--scenes", "3", "--seed", "0"]),
        ("encoders", ["synth", "encoders", str(enc)]),
        ("prep scannet", ["prep", "scannet", str(data / "scans"), str(prep), "--num-frames", "8"]),
        ("prep qa", ["prep", "qa", str(prep), "--scanqa", str(bench / "scanqa"), "--sqa3d", str(bench / "sqa_task"),
                     "--scanrefer", str(bench / "scanrefer"), "--multi3drefer", str(bench / "multi3drefer"),
                     "--label-map", str(data / "scannet_metadata" / "scannetv2-labels.combined.tsv")]),
        ("inspect", ["inspect", "scene", str(prep), "scene0000_00", "--out", str(out / "inspect_scene0000_00.png")]),
        ("cache-latents", ["cache-latents", str(prep), str(cache), "--vae", str(enc / "tiny-vae"),
                           "--vision-tower", str(enc / "tiny-siglip")]),
        ("verify", ["verify", str(cache)]),
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stage_seconds = {name: round(run_stage(name, cmd), 2) for name, cmd in _stages(out)}
    summary = {"stage_seconds": stage_seconds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = Table(title="ross3d demo")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, sec in stage_seconds.items():
        table.add_row(name, f"{sec:.1f}")
    console.print(table)
    console.print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
