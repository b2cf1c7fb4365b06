"""The `ross3d prep` command group; its subcommands live in prep_scannet.py, prep_qa.py and prep_vision_only.py."""

import typer

prep_app = typer.Typer(help="Stage 1: raw data -> PREP_DIR (ScanNet scans, benchmark annotations).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(prep_app, name="prep")
