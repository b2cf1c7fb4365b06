"""Per-array checksums of the scene records: CRC32C (hardware-accelerated, google-crc32c) in records written now,
sha256 in records written before; both cover the dtype, the shape and the C-order bytes. A record entry holds one
of them (`crc32c` or `sha256`); `recorded` and `computed` give both the same text form, so that old and new records
verify alike and the index and manifest checksums of old caches stay what they were."""

from __future__ import annotations

import hashlib

import google_crc32c
import numpy as np


def _header(a: np.ndarray) -> bytes:
    return f"{a.dtype.str}{a.shape}".encode()


def header_crc32c(a: np.ndarray) -> int:
    """The CRC32C of the array's dtype and shape: where its checksum starts, before the bytes."""
    return google_crc32c.value(_header(a))


def array_crc32c(a: np.ndarray) -> str:
    """8 hex digits of CRC32C over dtype, shape and the C-order bytes (google-crc32c reads a contiguous array's
    buffer in place, without a copy)."""
    return f"{google_crc32c.extend(header_crc32c(a), np.ascontiguousarray(a).reshape(-1)):08x}"


def array_sha256(a: np.ndarray) -> str:
    """sha256 over dtype, shape and the C-order bytes (records written before CRC32C)."""
    h = hashlib.sha256(_header(a))
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def recorded(entry: dict) -> str | None:
    """A record entry's checksum as text: `crc32c:<8 hex>`, or the bare sha256 of older records; None if absent."""
    if "crc32c" in entry:
        return f"crc32c:{entry['crc32c']}"
    return entry.get("sha256")


def computed(a: np.ndarray, entry: dict, crc32c: str | None = None) -> str:
    """The array's checksum by the entry's algorithm, in `recorded`'s form (`crc32c`: the array's CRC32C if already
    computed, e.g. by ross3d.cache.scan)."""
    if "crc32c" not in entry:
        return array_sha256(a)
    return f"crc32c:{crc32c or array_crc32c(a)}"
