"""One run per output folder: `exclusive_lock(folder, what)` holds an flock on `folder/.ross3d.lock` for the
duration of a run. A second run on the same folder fails at once with a one-line error naming the holder's pid,
before it deletes or writes anything. The kernel drops the lock when the holder exits, however it ends (kill -9
included), so a stale lock file never blocks a later run; the file itself stays (removing it would let two runs
lock two different files). Under torchrun each rank locks its own file (`.ross3d.lock.rank<R>` beyond rank 0),
so the ranks of one run do not block each other while a second run on the folder is refused (its rank 0 is)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ross3d.errors import InputError

LOCK_FILE = ".ross3d.lock"


def lock_path(folder: Path) -> Path:
    """The lock file of this process's rank (the RANK variable of torchrun; 0 for a plain process)."""
    rank = int(os.environ.get("RANK", "0") or 0)
    return Path(folder) / (LOCK_FILE if rank == 0 else f"{LOCK_FILE}.rank{rank}")


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, what: str) -> Iterator[Path]:
    """Create `folder` if needed and hold its lock while the block runs (InputError when another run holds it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path(folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by spawned processes (O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "pid not written yet"
            raise InputError(folder, f"in use by another run ({holder}, lock {path.name}); wait for it to finish "
                                     "or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
