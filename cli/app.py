"""The Typer application: registers every stage's commands; heavy libraries are imported inside commands."""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from ross3d import __version__

app = typer.Typer(
    name="ross3d",
    help="Data preparation, latent caching, training and evaluation for Ross3D on ScanNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; the modules themselves import only typer at import time.
COMMAND_MODULES = ["synth", "prep", "prep_scannet", "prep_qa", "eval", "eval_run", "inspect", "model", "cache", "train",
                   "visualize"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ross3d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
    local_rank: Optional[int] = typer.Option(None, "--local_rank", "--local-rank", hidden=True,
                                             help="Set by the deepspeed launcher (`deepspeed --module "
                                                  "ross3d_cli.app ...`); the rank is read from LOCAL_RANK."),
) -> None:
    """ross3d: raw ScanNet -> PREP -> CACHE -> train -> eval."""
    from ross3d_cli.console import setup_logging

    setup_logging(verbose)


for _name in COMMAND_MODULES:
    importlib.import_module(f"ross3d_cli.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
