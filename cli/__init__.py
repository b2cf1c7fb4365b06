"""The `ross3d` command line (installed as the package `ross3d_cli`): thin Typer commands over the library."""
