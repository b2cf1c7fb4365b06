"""Exception types shared by every stage: one base, and an input error that always names the offending file."""

from __future__ import annotations

from pathlib import Path


class Ross3DError(Exception):
    """Base class of every error ross3d raises on purpose; the CLI turns it into a one-line message."""


class InputError(Ross3DError):
    """Bad or unreadable input data; the message names the file and says what is wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable, so a loader worker can hand it to the training process
        return type(self), (self.path, self.problem)


class ConfigError(Ross3DError):
    """An invalid option or configuration value; the message names the key."""


class TrainingError(Ross3DError):
    """Training cannot go on (e.g. a non-finite loss); the message says what happened and what was kept."""
