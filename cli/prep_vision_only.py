"""`ross3d prep vision-only`: scenes without conversations -> `vision_only` rows of PREP_DIR/samples.parquet (logic
in ross3d.prep.vision_only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ross3d_cli.prep import prep_app


def vision_only(
    prep_dir: Path = typer.Argument(..., help="PREP_DIR written by `ross3d prep scannet`."),
    scenes: Optional[str] = typer.Option(None, "--scenes", help="Comma-separated scene ids."),
    scene_list: Optional[Path] = typer.Option(None, "--scene-list", help="File with one scene id per line."),
    all_scenes: bool = typer.Option(False, "--all", help="Every prepared scene that has no samples yet."),
) -> None:
    """Append vision-only training samples (a scene, no conversation: reconstruction losses only)."""
    from ross3d.errors import ConfigError
    from ross3d.prep.vision_only import append_vision_only
    from ross3d_cli.console import console, user_errors
    from ross3d_cli.scene_options import scene_ids

    with user_errors():
        ids = scene_ids(scenes, scene_list)
        if all_scenes == (ids is not None):
            raise ConfigError("give one of --scenes, --scene-list or --all")
        report = append_vision_only(prep_dir, ids)
    console.print(f"{len(report.added)} vision-only samples added, {len(report.present)} already present "
                  f"({report.samples_path})", highlight=False)


def register(app: typer.Typer) -> None:
    prep_app.command("vision-only")(vision_only)
