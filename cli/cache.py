"""`ross3d cache-latents` (PREP_DIR -> CACHE_DIR, logic in ross3d.cache.run) and `ross3d verify` (ross3d.cache.verify)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

import typer

from ross3d_cli.choices import CacheStrategy, Dtype

STRATEGIES = {"uniform": ("uniform",), "max-coverage": ("max-coverage",), "both": ("uniform", "max-coverage")}


def cache_latents(
    prep_dir: Path = typer.Argument(..., help="PREP_DIR written by `ross3d prep scannet`."),
    cache_dir: Path = typer.Argument(..., help="Output CACHE_DIR."),
    vae: Path = typer.Option(..., "--vae", help="diffusers AutoencoderKL folder (the FLUX.1-dev `vae/`)."),
    vision_tower: Optional[Path] = typer.Option(None, "--vision-tower", help="transformers SigLIP vision folder."),
    strategy: CacheStrategy = typer.Option(CacheStrategy.both, "--strategy", help="Frame selections to cache."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per encoder call (batches span scenes)."),
    dtype: Optional[Dtype] = typer.Option(None, "--dtype", help="Compute dtype (default: bf16 autocast on cuda, "
                                          "fp32 on cpu)."),
    workers: int = typer.Option(4, "--workers", help="Threads decoding JPEGs ahead of the encoder."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip scenes committed with the same settings."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Replace a cache built with other settings."),
) -> None:
    """Encode views and BEV with the FLUX VAE (posterior mean and logvar) and, optionally, SigLIP features."""
    from ross3d.cache.run import CacheOptions, cache_latents as run
    from ross3d.progress import NullProgress
    from ross3d_cli.console import RichProgress, console, user_errors

    with user_errors():
        options = CacheOptions(strategies=STRATEGIES[strategy.value], dtype=dtype and dtype.value, device=device,
                               batch_size=batch_size, workers=workers, resume=resume, rebuild=rebuild)
        show = os.environ.get("RANK", "0") == "0"
        with RichProgress() if show else contextlib.nullcontext(NullProgress()) as progress:
            report = run(prep_dir, cache_dir, vae, vision_tower, options, progress)
    rate = report.images / report.seconds if report.seconds else 0.0
    console.print(f"{len(report.ok)} scenes cached, {len(report.skipped)} skipped (already done), "
                  f"{len(report.failed)} failed; {report.images:,} images in {report.seconds:.1f} s "
                  f"({rate:,.1f} images/s)", highlight=False)
    for scene_id, error in sorted(report.failed.items()):
        console.print(f"[red]failed:[/] {scene_id}: {error}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


def verify(cache_dir: Path = typer.Argument(..., help="CACHE_DIR to check.")) -> None:
    """Check shapes, finiteness, checksums and fingerprints of a CACHE_DIR; exit 1 on any problem."""
    from ross3d.cache.verify import verify_cache
    from ross3d_cli.console import RichProgress, console, user_errors

    with user_errors(), RichProgress() as progress:
        report = verify_cache(cache_dir, progress)
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    console.print(f"{report.scenes} scenes, {report.arrays} arrays, {report.bytes / 2**20:,.1f} MiB checked; "
                  f"{len(report.problems)} problems", highlight=False)
    if report.problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("cache-latents")(cache_latents)
    app.command("verify")(verify)
