"""`ross3d convert-checkpoint SRC DST`: original LLaVA-NeXT / transformers LLaVA-OneVision -> ross3d format
(logic in ross3d.model.checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def convert_checkpoint(
    src: Path = typer.Argument(..., help="Checkpoint folder: original LLaVA-NeXT format (LLaVA-Video-7B-Qwen2, "
                                         "llava-video-qwen2-7b-ross3d) or transformers LLaVA-OneVision."),
    dst: Path = typer.Argument(..., help="Output folder: config.json + model.safetensors + tokenizer, and "
                                         "vision_tower/ (the SigLIP tower stored in SRC, for cache-latents)."),
    preset: str = typer.Option("7b", "--preset", help="Model preset for settings the checkpoint does not record."),
    mm_inv_projector: Optional[Path] = typer.Option(
        None, "--mm-inv-projector", help="2D Ross mm_inv_projector.bin to initialise the denoiser from (its sizes "
                                         "when the checkpoint has no denoiser)."),
    vision_config: Optional[Path] = typer.Option(
        None, "--vision-config", help="config.json of the full SigLIP tower (a SiglipVisionConfig) when it is not "
                                      "siglip-so400m-patch14-384."),
) -> None:
    """Convert a checkpoint to the ross3d safetensors format, reporting every key that did not map."""
    from ross3d.model.checkpoint import convert_checkpoint as convert
    from ross3d.model.config import preset as get_preset
    from ross3d_cli.console import RichProgress, console, user_errors

    with user_errors(), RichProgress() as progress:
        result = convert(src, dst, base=get_preset(preset), progress=progress, vision_config=vision_config,
                         mm_inv_projector=mm_inv_projector)
    report = result.load
    console.print(f"{dst}: {report.summary()}", highlight=False)
    for title, keys in (("dropped", report.dropped), ("unexpected", report.unexpected),
                        ("freshly initialised", report.fresh)):
        if keys:
            console.print(f"[yellow]{title} ({len(keys)}):[/] " + ", ".join(keys[:8]) +
                          (" ..." if len(keys) > 8 else ""), highlight=False)
    ids = ", ".join(f"{tok} {i}" + (" (added, mean-initialised)" if tok in result.added_tokens else "")
                    for tok, i in result.token_ids.items())
    console.print(f"tokens: {ids}", highlight=False)
    if result.tower is not None:
        console.print(f"{result.tower.folder}: {result.tower.summary()}; pass it to cache-latents --vision-tower",
                      highlight=False)
    else:
        console.print("[yellow]no vision tower stored in the checkpoint:[/] cache with the tower it was trained with",
                      highlight=False)
    if result.ross2d is not None:
        console.print(f"denoiser from {mm_inv_projector}: {result.ross2d.summary()}", highlight=False)
        for key in result.ross2d.unexpected + result.ross2d.fresh:
            console.print(f"[yellow]unmatched:[/] {key}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("convert-checkpoint")(convert_checkpoint)
