"""`one_torch_thread()`: run a block with torch on one CPU thread and restore the previous count afterwards, even
when the block raises. Tests of many tiny ops use it (one thread avoids oversubscription on a shared CPU); a count
left at 1 would change later in-process runs, whose float sums then differ from a subprocess's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
