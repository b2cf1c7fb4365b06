"""Per-array checksums of the scene records: CRC32C (hardware-accelerated, google-crc32c) in records written now,
sha256 in records written before; both cover the dtype, the shape and the C-order bytes. A record entry holds one
of them (`crc32c` or `sha256`); `recorded` and `computed` give both the same text form, so that old and new records
verify alike and the index and manifest checksums of old caches stay what they were."""

from __future__ import annotations

import hashlib

import google_crc32c
import numpy as np

# bytes per CRC32C update: google-crc32c takes only `bytes`, so the array goes through it in copies small enough to
# stay in the CPU cache (one copy of the whole array costs as much as the CRC itself)
CRC_BLOCK = 1 << 19


def _header(a: np.ndarray) -> bytes:
    return f"{a.dtype.str}{a.shape}".encode()


def array_crc32c(a: np.ndarray) -> str:
    """8 hex digits of CRC32C over dtype, shape and the C-order bytes."""
    data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    crc = google_crc32c.value(_header(a))
    for start in range(0, data.size, CRC_BLOCK):
        crc = google_crc32c.extend(crc, data[start:start + CRC_BLOCK].tobytes())
    return f"{crc:08x}"


def array_sha256(a: np.ndarray) -> str:
    """sha256 over dtype, shape and the C-order bytes (records written before CRC32C)."""
    h = hashlib.sha256(_header(a))
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def checksum_entry(a: np.ndarray) -> dict[str, str]:
    """The checksum field of a new record entry."""
    return {"crc32c": array_crc32c(a)}


def recorded(entry: dict) -> str | None:
    """A record entry's checksum as text: `crc32c:<8 hex>`, or the bare sha256 of older records; None if absent."""
    if "crc32c" in entry:
        return f"crc32c:{entry['crc32c']}"
    return entry.get("sha256")


def computed(a: np.ndarray, entry: dict) -> str:
    """The array's checksum by the entry's algorithm, in `recorded`'s form."""
    return f"crc32c:{array_crc32c(a)}" if "crc32c" in entry else array_sha256(a)
