"""The `ross3d eval` command group: scoring answer files and running benchmarks."""

import typer

eval_app = typer.Typer(help="Stage 4: run the five benchmarks and score answer files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
