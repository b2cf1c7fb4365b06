"""`ross3d inspect`: pictures of prepared data for a quick look (logic in ross3d.prep.inspect)."""

from __future__ import annotations

from pathlib import Path

import typer

inspect_app = typer.Typer(help="Pictures of prepared data.", no_args_is_help=True)


@inspect_app.command("scene")
def scene(
    prep_dir: Path = typer.Argument(..., help="PREP_DIR written by `ross3d prep scannet`."),
    scene_id: str = typer.Argument(..., help="Scene id, e.g. scene0000_00."),
    out: Path = typer.Option(..., "--out", help="Output PNG."),
) -> None:
    """Selected frames of both strategies, the BEV with their camera positions, and the coverage curve."""
    from ross3d.prep.inspect import inspect_scene
    from ross3d_cli.console import console, user_errors

    with user_errors():
        path = inspect_scene(prep_dir, scene_id, out)
    console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(inspect_app, name="inspect")
