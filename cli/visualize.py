"""`ross3d visualize`: ground truth beside the denoiser's reconstructions of masked views and the BEV for one cached
sample, with latent-space errors against an unconditioned baseline (logic in ross3d.visualize)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ross3d_cli.choices import Sampler, Strategy


def _views(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated frame indices, got {text!r}") from None


def visualize(
    checkpoint: Path = typer.Argument(..., help="A ross3d model folder (e.g. RUN/checkpoints/final)."),
    cache: Path = typer.Option(..., "--cache", help="CACHE_DIR written by `ross3d cache-latents`."),
    samples: Path = typer.Option(..., "--samples", help="PREP_DIR/samples.parquet."),
    scene: str = typer.Option(..., "--scene", help="Scene id, e.g. scene0000_00."),
    sample_id: Optional[str] = typer.Option(None, "--sample-id", help="Sample to condition on (default: the "
                                            "scene's first)."),
    vae: Optional[Path] = typer.Option(None, "--vae", help="The VAE folder the cache was built with (checked "
                                       "against the cache fingerprint); needed for the picture."),
    mask_views: Optional[str] = typer.Option(None, "--mask-views", help="Frames to mask, e.g. 0,3,5 (default: the "
                                             "paper's masking, drawn from --seed)."),
    steps: int = typer.Option(50, "--steps", help="Sampling steps (the 1000-step schedule respaced)."),
    sampler: Sampler = typer.Option(Sampler.ddim, "--sampler", help="The diffusers scheduler."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clamp the predicted x0 to [-1, 1] at every step, as "
                              "the original's sampler (default); --no-clip samples without clamping."),
    seed: int = typer.Option(0, "--seed", help="Seed of the view mask and the sampling noise."),
    strategy: Strategy = typer.Option(Strategy.uniform, "--strategy", help="Cached frame strategy."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda[:N] (default: cuda when available)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    """Sample reconstructions of masked views and the BEV from a checkpoint; picture and/or numbers."""
    import json

    from ross3d.visualize.run import visualize_checkpoint
    from ross3d_cli.console import console, user_errors

    if out is None and not as_json:
        raise typer.BadParameter("give --out PNG, --json, or both")
    with user_errors():
        report = visualize_checkpoint(checkpoint, cache, samples, scene, sample_id, out, vae, _views(mask_views),
                                      steps, sampler.value, seed, strategy.value, device=device, clip=clip)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_table(report)
    console.print(f"wrote {report['picture']}", highlight=False)


def _print_table(report: dict) -> None:
    from rich.table import Table

    from ross3d_cli.console import console

    table = Table(title=f"{report['scene_id']}  sample {report['sample_id']}  step {report['step']}  "
                        f"({report['sampler']}, {report['steps']} steps{'' if report['clip'] else ', no clip'})")
    for name in ("target", "MSE", "cosine", "baseline MSE", "baseline cosine"):
        table.add_column(name, justify="left" if name == "target" else "right")
    for r in report["reconstructions"]:
        name = "bev (masked cells)" if r["kind"] == "bev" else f"view {r['view']}"
        table.add_row(name, *(f"{r[k]:.4f}" for k in ("mse", "cosine", "baseline_mse", "baseline_cosine")))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("visualize")(visualize)
