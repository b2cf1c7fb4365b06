"""One pass over an array for the checks of a read: its checksum (XXH3-64 in records written now, an older record's
own algorithm otherwise, as ross3d.cache.checksum records them) and whether its floats are finite, block by block,
each block checked while it sits in the CPU cache. `copy_in_blocks` makes the pass during the copy a read does
anyway (a memory-mapped chunk into the result), so the check fetches no byte from memory a second time; `scan`
passes over an array already in memory (`ross3d verify`, the writer).

The writer attests finiteness in the record (`checksum_fields`): `finite_xxh3` is the XXH3 of the bytes it found
finite (`finite_crc32c`, their CRC32C, in records written before XXH3). A read whose bytes have that checksum holds
those same bytes, so its pass may skip finiteness (`Scanner(check_finite=False)`) and check the checksum alone; any
other checksum sends the array to a full finiteness count (docs/trust.md gives the argument and its limit).

Finiteness from the bits, without widening and without temporaries: a float is NaN or infinite exactly when its
exponent bits are all ones. Viewed as signed integers of the float's width, the positive ones are exactly the values
>= the exponent mask (every other non-negative float is below it, every negative one is below 0); viewed as unsigned
integers, the negative ones are exactly the values >= sign bit | exponent mask. So two integer maxima per block
decide it, for float32 as for the bf16 features stored as uint16 bits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ross3d.cache.checksum import WRITTEN, algorithm, attestation, hasher

# bytes per block: a block is copied, then its two maxima and its checksum read it from the L2 cache (half of it at
# most)
SCAN_BLOCK = 1 << 19
BF16_EXPONENT = 0x7F80


@dataclass(frozen=True)
class Scan:
    algorithm: str  # of the checksum, as a record entry's key (ross3d.cache.checksum)
    digest: str  # hex, as a record entry holds it
    finite: bool | None  # no NaN or infinity (True for non-float data); None: not checked by this pass


def exponent_mask(dtype: np.dtype, bf16: bool) -> int | None:
    """The exponent bits of float data (of bf16 features stored as uint16 bits); None for other data."""
    if bf16:
        return BF16_EXPONENT
    if dtype.kind != "f":
        return None
    info = np.finfo(dtype)
    return ((1 << info.nexp) - 1) << info.nmant


def unsigned_bits(a: np.ndarray) -> np.ndarray:
    """The array viewed as unsigned integers of its width (bf16 bits are already)."""
    return a.view(a.dtype.str.replace("f", "u"))


def bits_finite(bits: np.ndarray, exponent: int) -> bool:
    """No NaN or infinity among non-empty unsigned float bits with this exponent mask (the module's two maxima)."""
    sign = 1 << (8 * bits.itemsize - 1)
    signed = bits.view(bits.dtype.str.replace("u", "i"))
    return int(signed.max()) < exponent and int(bits.max()) < (sign | exponent)


def non_finite_count(a: np.ndarray, bf16: bool) -> int:
    """How many values are NaN or infinite (exponent all ones); 0 for non-float data. For error messages."""
    exponent = exponent_mask(a.dtype, bf16)
    if exponent is None:
        return 0
    return int(np.count_nonzero((unsigned_bits(a) & exponent) == exponent))


class Scanner:
    """The checksum by algorithm `name` and finiteness (unless `check_finite` is False) of one array, fed its C-order
    elements block by block (`update`), in order."""

    def __init__(self, a: np.ndarray, bf16: bool, check_finite: bool = True, name: str = WRITTEN):
        self._name, self._hash = name, hasher(a, name)
        exponent = exponent_mask(a.dtype, bf16)
        self._exponent = exponent if check_finite else None
        self._finite = None if exponent is not None and not check_finite else True

    @classmethod
    def for_entry(cls, a: np.ndarray, bf16: bool, entry: dict) -> Scanner:
        """The scanner of a read checked against its record entry: by the entry's checksum algorithm (XXH3 if it
        has none), finiteness only where the writer did not attest it for that algorithm."""
        name = algorithm(entry) or WRITTEN
        return cls(a, bf16, attestation(name) not in entry, name)

    def update(self, block: np.ndarray) -> None:
        if self._exponent is not None and block.size:  # finiteness first: it brings the block into the cache
            self._finite &= bits_finite(unsigned_bits(block), self._exponent)
        self._hash.update(block)

    def result(self) -> Scan:
        return Scan(self._name, self._hash.hexdigest(), self._finite)


def _blocks(flat: np.ndarray) -> Iterator[slice]:
    """Consecutive slices of a flat array, SCAN_BLOCK bytes each (the last one shorter)."""
    step = max(1, SCAN_BLOCK // flat.itemsize)
    return (slice(start, start + step) for start in range(0, flat.size, step))


def copy_in_blocks(src: np.ndarray, visit: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """A C-order copy of contiguous `src`, made block by block; `visit` (e.g. `Scanner.update`) sees each copied
    block right after its copy."""
    out = np.empty(src.shape, src.dtype)
    flat_src, flat_out = src.reshape(-1), out.reshape(-1)
    for block in _blocks(flat_src):
        flat_out[block] = flat_src[block]
        if visit is not None:
            visit(flat_out[block])
    return out


def scan(a: np.ndarray, bf16: bool, name: str = WRITTEN) -> Scan:
    """The checksum by algorithm `name` and finiteness of an array in memory, in one blockwise pass (a
    non-contiguous one is copied first)."""
    flat = np.ascontiguousarray(a).reshape(-1)
    scanner = Scanner(a, bf16, name=name)
    for block in _blocks(flat):
        scanner.update(flat[block])
    return scanner.result()


def checksum_fields(a: np.ndarray, bf16: bool) -> dict[str, str]:
    """The checksum fields of a new record entry: `xxh3`, and for float data found finite `finite_xxh3`."""
    scanned = scan(a, bf16)
    attested = exponent_mask(a.dtype, bf16) is not None and scanned.finite
    return {WRITTEN: scanned.digest, **({attestation(WRITTEN): scanned.digest} if attested else {})}
