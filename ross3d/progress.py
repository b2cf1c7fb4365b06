"""Progress reporting protocol: library code reports work done, the CLI decides how to display it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from long-running library functions (tasks are keyed by a short name)."""

    def start(self, key: str, total: int | None, description: str, unit: str = "it") -> None: ...

    def advance(self, key: str, n: int = 1) -> None: ...

    def finish(self, key: str) -> None: ...


class NullProgress:
    """A Progress that shows nothing (the default in library calls and tests)."""

    def start(self, key: str, total: int | None, description: str, unit: str = "it") -> None:
        pass

    def advance(self, key: str, n: int = 1) -> None:
        pass

    def finish(self, key: str) -> None:
        pass
