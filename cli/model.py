"""`ross3d convert-checkpoint SRC DST`: original LLaVA-NeXT / transformers LLaVA-OneVision -> ross3d format
(logic in ross3d.model.checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def convert_checkpoint(
    src: Path = typer.Argument(..., help="Checkpoint folder: original LLaVA-NeXT format (LLaVA-Video-7B-Qwen2, "
                                         "llava-video-qwen2-7b-ross3d) or transformers LLaVA-OneVision."),
    dst: Path = typer.Argument(..., help="Output folder (config.json + model.safetensors + tokenizer files)."),
    preset: str = typer.Option("7b", "--preset", help="Model preset for settings the checkpoint does not record."),
    mm_inv_projector: Optional[Path] = typer.Option(
        None, "--mm-inv-projector", help="2D Ross mm_inv_projector.bin to initialise the denoiser from."),
) -> None:
    """Convert a checkpoint to the ross3d safetensors format, reporting every key that did not map."""
    from ross3d.model.checkpoint import convert_checkpoint as convert
    from ross3d.model.checkpoint import init_denoiser_from_ross2d, load_model, save_model
    from ross3d.model.config import preset as get_preset
    from ross3d_cli.console import RichProgress, console, user_errors

    with user_errors(), RichProgress() as progress:
        report = convert(src, dst, base=get_preset(preset), progress=progress)
        if mm_inv_projector is not None:
            model, _ = load_model(dst)
            ross = init_denoiser_from_ross2d(model, mm_inv_projector)
            save_model(model, dst)
    console.print(f"{dst}: {report.summary()}", highlight=False)
    for title, keys in (("dropped", report.dropped), ("unexpected", report.unexpected),
                        ("freshly initialised", report.fresh)):
        if keys:
            console.print(f"[yellow]{title} ({len(keys)}):[/] " + ", ".join(keys[:8]) +
                          (" ..." if len(keys) > 8 else ""), highlight=False)
    if mm_inv_projector is not None:
        console.print(f"denoiser from {mm_inv_projector}: {ross.summary()}", highlight=False)
        for key in ross.unexpected + ross.fresh:
            console.print(f"[yellow]unmatched:[/] {key}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("convert-checkpoint")(convert_checkpoint)
