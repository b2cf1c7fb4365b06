"""Names that become paths: scene ids (from the command line, scene lists, benchmark files, pkls and parquet
tables) and benchmark names are folder and file names under ross3d's roots, so each is checked where it enters.

The rule (docs/untrusted-inputs.md): 1-128 characters from `A-Z a-z 0-9 _ . -`, starting with a letter or digit,
without `..`. ScanNet's `sceneNNNN_NN` passes; `/`, `..`, a leading `.` (temp entries, hidden files), absolute
paths, spaces and empty names do not. `child_path` joins one such name under a root and checks that the result
stays under it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ross3d.errors import InputError

RULE = "1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit, no '..'"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None and ".." not in value


def check_scene_id(value: object, source: str | Path, what: str = "scene id") -> str:
    """`value` when it is a safe name, else InputError naming `source` (the file or option it came from)."""
    if not is_safe_name(value):
        raise InputError(source, f"{what} {value!r} is not a safe name ({RULE})")
    return value


def child_path(root: str | Path, name: str, source: str | Path | None = None, what: str = "scene id") -> Path:
    """`root/name` for a safe `name`, checked to lie directly under `root` (InputError naming `source`, default
    the root, otherwise)."""
    root = Path(root)
    check_scene_id(name, root if source is None else source, what)
    path = root / name
    if os.path.dirname(os.path.normpath(path)) != os.path.normpath(root):
        raise InputError(root if source is None else source, f"{what} {name!r} leaves {root}")
    return path
