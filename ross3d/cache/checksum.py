"""Per-array checksums of the scene records, each over the ASCII text of the dtype and shape, then the C-order
bytes. A record entry holds one, under its algorithm's name: `xxh3` (XXH3-64, xxhash: 16 hex digits) in records
written now; `crc32c` (CRC32C, google-crc32c: 8 hex digits) or `sha256` in records written before, which verify by
their own algorithm as they did. `hasher` computes any of them in a stream of blocks (ross3d.cache.scan), `recorded`
gives an entry's checksum the text form the index and the manifest hold, unchanged for old records."""

from __future__ import annotations

import hashlib

import google_crc32c
import numpy as np
import xxhash

WRITTEN = "xxh3"  # the algorithm of records written now


class _Crc32c:
    """CRC32C in hashlib's streaming form (`update`, `hexdigest`), for records written before XXH3."""

    def __init__(self, data: bytes):
        self._crc = google_crc32c.value(data)

    def update(self, data) -> None:
        self._crc = google_crc32c.extend(self._crc, data)

    def hexdigest(self) -> str:
        return f"{self._crc:08x}"


# by the entry key that holds a checksum: a streaming hash started on given bytes (each reads a contiguous array's
# buffer in place, without a copy); sha256 in records written before CRC32C
ALGORITHMS = {"xxh3": xxhash.xxh3_64, "crc32c": _Crc32c, "sha256": hashlib.sha256}


def _header(a: np.ndarray) -> bytes:
    return f"{a.dtype.str}{a.shape}".encode()


def hasher(a: np.ndarray, name: str = WRITTEN):
    """A streaming hash (`update(block)`, `hexdigest()`) of algorithm `name` over the array's dtype and shape: fed
    the C-order bytes, it gives the array's checksum."""
    return ALGORITHMS[name](_header(a))


def array_checksum(a: np.ndarray, name: str = WRITTEN) -> str:
    """The hex digest of algorithm `name` over dtype, shape and the C-order bytes, as a record entry holds it."""
    h = hasher(a, name)
    h.update(np.ascontiguousarray(a).reshape(-1))
    return h.hexdigest()


def algorithm(entry: dict) -> str | None:
    """The algorithm of a record entry's checksum; None if it has none."""
    return next((name for name in ALGORITHMS if name in entry), None)


def attestation(name: str) -> str:
    """The entry key of the writer's finiteness attestation for checksums of algorithm `name`: the checksum of the
    bytes it found finite (`finite_xxh3`; `finite_crc32c` in records written before; sha256 records have none)."""
    return f"finite_{name}"


def checksum_text(name: str, digest: str) -> str:
    """A checksum as the index and the manifest hold it: `<name>:<hex>`, the bare hex for sha256 (older records)."""
    return digest if name == "sha256" else f"{name}:{digest}"


def recorded(entry: dict) -> str | None:
    """A record entry's checksum as text (`checksum_text`); None if absent."""
    name = algorithm(entry)
    return None if name is None else checksum_text(name, entry[name])
