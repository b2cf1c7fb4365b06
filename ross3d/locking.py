"""`exclusive_lock(folder, what)`: one writer per output folder. An advisory `fcntl.flock` on FOLDER/.lock, held
for the duration of the `with` block and released by the kernel when the process dies (kill -9 included), so a
stale lock never blocks the next run. A second run fails at once, naming the holder's pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ross3d.errors import InputError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold FOLDER's lock (creating the folder) or raise InputError naming the pid that holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise InputError(folder, f"another {what} (pid {holder}) is using this folder; wait for it to "
                                     f"finish or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
