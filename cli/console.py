"""Console helpers for commands: rich logging, a rich Progress implementation, and error-to-exit-code mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress as RichProgressBar,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import ProgressColumn
from rich.text import Text

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


class _RateColumn(ProgressColumn):
    """Items per second with the task's unit (e.g. '12.3 frames/s')."""

    def render(self, task) -> Text:  # type: ignore[override]
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text("-" if speed is None else f"{speed:,.1f} {unit}/s", style="progress.data.speed")


class RichProgress:
    """ross3d.progress.Progress shown as rich bars with counts, rates and time remaining."""

    def __init__(self) -> None:
        self._bar = RichProgressBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def start(self, key: str, total: int | None, description: str, unit: str = "it") -> None:
        self._tasks[key] = self._bar.add_task(description, total=total, unit=unit)

    def advance(self, key: str, n: int = 1) -> None:
        self._bar.advance(self._tasks[key], n)

    def finish(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._bar.stop_task(task)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn ross3d errors into one red line on stderr and exit code 1 (no traceback)."""
    from rich.markup import escape

    from ross3d.errors import Ross3DError

    try:
        yield
    except Ross3DError as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
