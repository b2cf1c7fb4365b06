"""The Typer application: registers every stage's commands; heavy libraries are imported inside commands."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer
from typer.core import TyperGroup

from ross3d import __version__

# click's base of usage errors (typer vendors click in recent versions, so it is reached through typer's class)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class OneLineErrors(TyperGroup):
    """A usage error (unknown option, a value outside an option's choices, a missing argument) is one line on
    stderr naming the command, as ross3d's own errors are, instead of click's usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _CLICK_ERROR as err:
            if type(err).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                from rich.markup import escape

                from ross3d_cli.console import console

                ctx = getattr(err, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                console.print(f"[bold red]error:[/] {escape(where + err.format_message())}", highlight=False,
                              soft_wrap=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="ross3d",
    cls=OneLineErrors,
    help="Data preparation, latent caching, training and evaluation for Ross3D on ScanNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; the modules themselves import only typer at import time.
COMMAND_MODULES = ["synth", "prep", "prep_scannet", "prep_qa", "prep_vision_only", "eval", "eval_run", "inspect", "model",
                   "cache", "train", "visualize"]


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
