"""`ross3d synth`: synthetic ScanNet-format scenes (placeholder registration until the generator lands)."""
import typer

def register(app: typer.Typer) -> None:
    pass
