"""Scene-record checksums and the finiteness pass of the trainer's first read: XXH3-64 (records written now) against
xxhash called directly on the header and C-order bytes, CRC32C (records written before) against a bitwise CRC32C
written here from its definition (checked on the standard check value) and sha256 (older records) against hashlib,
also when computed block by block during a copy (ross3d.cache.scan); and bf16 and IEEE float bit patterns of every
class, at block boundaries, against torch's and numpy's own isfinite (docs/data-format.md, "scene.json")."""

import hashlib

import numpy as np
import pytest
import torch
import xxhash

from ross3d.cache import scan as scan_module
from ross3d.cache import verify as verify_module
from ross3d.cache.checksum import array_checksum, recorded
from ross3d.cache.scan import Scanner, bits_finite, checksum_fields, copy_in_blocks, non_finite_count, scan
from ross3d.cache.verify import content_problems


def _crc32c_bitwise(data: bytes) -> int:
    """CRC32C by its definition: reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# the reference digest of each record form over given bytes, computed without the code under test
REFERENCE = {"xxh3": lambda data: f"{xxhash.xxh3_64_intdigest(data):016x}",
             "crc32c": lambda data: f"{_crc32c_bitwise(data):08x}",
             "sha256": lambda data: hashlib.sha256(data).hexdigest()}


def test_references_give_the_standard_check_values():
    assert _crc32c_bitwise(b"123456789") == 0xE3069283  # RFC 3720 (iSCSI), the CRC-32C check value
    assert xxhash.xxh3_64_intdigest(b"") == 0x2D06800538D394C2  # XXH3-64 of empty input (xxHash's sanity test)


# 37 int16 values in reverse (a non-contiguous view: hashed in C order), the C-order bytes written out by hand
REVERSED = np.arange(37, dtype=np.int16).reshape(1, 37)[:, ::-1]
REVERSED_BYTES = b"<i2(1, 37)" + bytes(b for v in range(36, -1, -1) for b in (v, 0))


@pytest.mark.parametrize("name", REFERENCE)
def test_array_checksum_is_the_digest_of_header_and_bytes(name):
    assert array_checksum(REVERSED, name) == REFERENCE[name](REVERSED_BYTES)
    assert array_checksum(np.zeros((0, 3), np.float32), name) == REFERENCE[name](b"<f4(0, 3)")


def test_records_written_now_hold_xxh3():
    assert array_checksum(REVERSED) == f"{xxhash.xxh3_64_intdigest(REVERSED_BYTES):016x}"
    assert len(array_checksum(REVERSED)) == 16
    assert set(checksum_fields(REVERSED, bf16=False)) == {"xxh3"}


# (array, its header and C-order bytes): not a multiple of the blocks below, a multiple of 3 int16 per block, empty
ARRAYS = [(REVERSED, REVERSED_BYTES),
          (np.arange(36, dtype="<i2"), b"<i2(36,)" + np.arange(36, dtype="<i2").tobytes()),
          (np.zeros((0, 4), np.float32), b"<f4(0, 4)")]


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("block", [4, 5, 6, 1 << 19])  # bytes: 2, 2, 3 and all int16 values per block
@pytest.mark.parametrize("case", range(len(ARRAYS)))
def test_scan_and_checked_copy_give_the_checksum_across_blocks(monkeypatch, name, block, case):
    monkeypatch.setattr(scan_module, "SCAN_BLOCK", block)
    a, data = ARRAYS[case]
    expected = REFERENCE[name](data)
    assert scan(a, bf16=False, name=name) == scan_module.Scan(name, expected, True)
    src = np.ascontiguousarray(a)
    scanner, seen = Scanner(src, bf16=False, name=name), []
    copied = copy_in_blocks(src, lambda b: (seen.append(b.size), scanner.update(b)))
    assert copied.tobytes() == src.tobytes() and copied.shape == a.shape and not np.shares_memory(copied, src)
    per_block = max(1, block // src.itemsize)
    assert seen == [per_block] * (src.size // per_block) + ([src.size % per_block] if src.size % per_block else [])
    assert scanner.result() == scan_module.Scan(name, expected, True)
    assert copy_in_blocks(src).tobytes() == src.tobytes()


def _flipped(a: np.ndarray, byte: int, bit: int = 0x01) -> np.ndarray:
    """A copy of `a` with one bit of one of its bytes flipped."""
    out = a.copy()
    out.reshape(-1).view(np.uint8)[byte] ^= bit
    return out


# each record form: an entry for `a` whose checksum is the reference digest, and the text index and manifest hold
@pytest.mark.parametrize("name, text", [("xxh3", "xxh3:{}"), ("crc32c", "crc32c:{}"), ("sha256", "{}")])
def test_every_record_form_verifies_and_a_flipped_byte_fails(name, text):
    a = np.array([[1.5, -2.0]], np.float32)
    digest = REFERENCE[name](b"<f4(1, 2)" + bytes.fromhex("0000c03f000000c0"))
    entry = {"shape": [1, 2], "dtype": "<f4", name: digest}
    assert recorded(entry) == text.format(digest)
    assert content_problems("bev/vae_mean", a, False, entry) == []  # verify's own scan
    scanner = Scanner.for_entry(a, False, entry)  # the trainer's checked read
    value = copy_in_blocks(a, scanner.update)
    assert content_problems("bev/vae_mean", value, False, entry, scanner.result()) == []
    for byte in (0, 7):  # first and last byte
        damaged = _flipped(a, byte)
        assert content_problems("bev/vae_mean", damaged, False, entry) == ["bev/vae_mean: checksum mismatch"]
        scanner = Scanner.for_entry(damaged, False, entry)
        value = copy_in_blocks(damaged, scanner.update)
        assert content_problems("bev/vae_mean", value, False, entry, scanner.result()) == \
            ["bev/vae_mean: checksum mismatch"]
    assert content_problems("bev/vae_mean", a, False, {"shape": [1, 2], "dtype": "<f4"}) == \
        ["bev/vae_mean: no checksum recorded"]


# bf16 bit patterns: +-0, smallest subnormal, largest finite, +-1, +-inf, quiet and signalling NaNs of both signs
FINITE = [0x0000, 0x8000, 0x0001, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80]
NON_FINITE = [0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF]


def _bf16_isfinite(bits: np.ndarray) -> np.ndarray:
    """torch's own isfinite of the bf16 values (the reference, independent of the bit test under test)."""
    return torch.isfinite(torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)).numpy()


def test_hand_labelled_bf16_patterns_agree_with_torch():
    assert _bf16_isfinite(np.array(FINITE, np.uint16)).all()
    assert not _bf16_isfinite(np.array(NON_FINITE, np.uint16)).any()


def test_every_bf16_pattern_is_classified_as_torch_does():
    every = np.arange(1 << 16, dtype=np.uint64).astype(np.uint16)
    reference = _bf16_isfinite(every)
    assert [bits_finite(every[i:i + 1], 0x7F80) for i in range(every.size)] == reference.tolist()
    assert non_finite_count(every, bf16=True) == 2 * 2 ** 7  # either sign, exponent all ones, any of 7 mantissa bits


@pytest.mark.parametrize("repeat", [3, 5000])  # 5000: long enough for the vectorised loops and their tails
def test_bf16_finiteness_of_every_class_anywhere(repeat):
    finite = np.array(FINITE * repeat, np.uint16).reshape(repeat, 7)
    assert scan(finite, bf16=True).finite and scan(finite[:0], bf16=True).finite
    for pattern in NON_FINITE:
        for position in (0, 10, finite.size - 1):
            bits = finite.copy().reshape(-1)
            bits[position] = pattern
            assert not scan(bits.reshape(finite.shape), bf16=True).finite, (hex(pattern), position)
            entry = {"xxh3": array_checksum(bits)}
            assert content_problems("frames/vision", bits, True, entry) == ["frames/vision: 1 non-finite values"]


def test_bf16_non_finite_at_block_boundaries_of_a_checked_copy(monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_BLOCK", 10)  # 5 bf16 values per block: 43 values make 9 blocks
    finite = np.array((FINITE * 7)[:43], np.uint16)
    for position in (0, 4, 5, 9, 10, 39, 40, 42):  # first and last of blocks, and the short last block
        for pattern in NON_FINITE:
            bits = finite.copy()
            bits[position] = pattern
            scanner = Scanner(bits, bf16=True)
            copy_in_blocks(bits, scanner.update)
            assert scanner.result() == scan_module.Scan("xxh3", array_checksum(bits), False), (position, hex(pattern))
    scanner = Scanner(finite, bf16=True)
    copy_in_blocks(finite, scanner.update)
    assert scanner.result() == scan_module.Scan("xxh3", array_checksum(finite), True)


# float32 bit patterns: +-0, +-smallest subnormal, +-largest finite, +-inf, quiet and signalling NaNs, all ones
FLOAT32 = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x7F7FFFFF, 0xFF7FFFFF,
           0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_ieee_float_finiteness_by_bits_agrees_with_numpy(dtype):
    info = np.finfo(dtype)
    values = np.array([0.0, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.max, -info.max, np.inf,
                       -np.inf, np.nan, -np.nan], dtype)
    if dtype == np.float32:
        values = np.concatenate([values, np.array(FLOAT32, np.uint32).view(np.float32)])
    for i in range(values.size):
        one = values[i:i + 1]
        assert scan(one, bf16=False).finite == bool(np.isfinite(one[0])), (dtype, one.view(f"u{one.itemsize}"))
    assert non_finite_count(values, bf16=False) == np.count_nonzero(~np.isfinite(values))


def test_float_finiteness_and_box_padding():
    values = np.array([0.0, -1e38, 3.4e38, np.nan, np.inf, -np.inf], np.float32)
    assert scan(values[:3], bf16=False).finite and not scan(values, bf16=False).finite
    entry = {"xxh3": array_checksum(values)}
    assert content_problems("bev/vae_mean", values, False, entry) == ["bev/vae_mean: 3 non-finite values"]
    assert content_problems("objects/boxes", values, False, entry) == []  # NaN boxes are the format's padding
    assert scan(np.arange(5, dtype=np.int32), bf16=False).finite  # integers are never checked for finiteness


def test_the_writer_attests_finiteness_only_for_finite_float_data():
    finite, with_nan = np.array([1.5, -2.0], np.float32), np.array([1.5, np.nan], np.float32)
    digest = array_checksum(finite)
    assert checksum_fields(finite, bf16=False) == {"xxh3": digest, "finite_xxh3": digest}
    assert checksum_fields(with_nan, bf16=False) == {"xxh3": array_checksum(with_nan)}
    ints = np.arange(4, dtype=np.int16)
    assert checksum_fields(ints, bf16=False) == {"xxh3": array_checksum(ints)}
    inf_bits = np.array([0x3F80, 0x7F80], np.uint16)  # 1.0, +inf as bf16 bits
    assert checksum_fields(inf_bits, bf16=True) == {"xxh3": array_checksum(inf_bits)}
    assert checksum_fields(inf_bits, bf16=False) == {"xxh3": array_checksum(inf_bits)}  # plain uint16: no floats


@pytest.mark.parametrize("name", ["xxh3", "crc32c"])  # records written now, and by the previous version
def test_a_pass_without_finiteness_trusts_only_the_attested_bytes(name):
    finite = np.array([0x3F80, 0xBF80, 0x7F7F], np.uint16)
    nan = np.array([0x3F80, 0xBF80, 0xFFC0], np.uint16)  # the last value a negative NaN
    skipped = Scanner(nan, bf16=True, check_finite=False, name=name)
    skipped.update(nan)
    assert skipped.result() == scan_module.Scan(name, array_checksum(nan, name), None)
    ints = Scanner(np.arange(3, dtype=np.int32), bf16=False, check_finite=False, name=name)
    assert ints.result().finite is True  # integers: nothing to check
    attested = {name: array_checksum(finite, name), f"finite_{name}": array_checksum(finite, name)}
    lean = Scanner.for_entry(finite, True, attested)
    lean.update(finite)
    assert lean.result().finite is None  # the attestation of the entry's own algorithm skips the pass
    assert content_problems("frames/vision", finite, True, attested, lean.result()) == []
    # bytes rewritten with a NaN and their checksum updated: the attestation names other bytes, so they are counted
    stale = {name: array_checksum(nan, name), f"finite_{name}": array_checksum(finite, name)}
    assert content_problems("frames/vision", nan, True, stale, skipped.result()) == \
        ["frames/vision: 1 non-finite values"]
    assert content_problems("frames/vision", nan, True, {name: array_checksum(nan, name)}, skipped.result()) == \
        ["frames/vision: 1 non-finite values"]
    # the limit: an attestation forged for NaN bytes passes a read that skips finiteness; verify's full pass does not
    forged = {name: array_checksum(nan, name), f"finite_{name}": array_checksum(nan, name)}
    assert content_problems("frames/vision", nan, True, forged, skipped.result()) == []
    assert content_problems("frames/vision", nan, True, forged) == ["frames/vision: 1 non-finite values"]


def test_an_attestation_of_another_algorithm_is_not_honoured():
    nan = np.array([0x3F80, 0xFFC0], np.uint16)
    digest = array_checksum(nan, "crc32c")  # an XXH3 attestation beside a CRC32C checksum (no writer makes one)
    mixed = {"crc32c": digest, "finite_xxh3": digest}
    scanner = Scanner.for_entry(nan, True, mixed)
    scanner.update(nan)
    assert scanner.result() == scan_module.Scan("crc32c", digest, False)


@pytest.mark.parametrize("name", ["xxh3", "crc32c"])
def test_the_attestation_skips_the_count_only_while_the_checksum_matches(monkeypatch, name):
    """A checked read of attested bytes skips finiteness; one flipped byte that makes a NaN changes the checksum,
    so the read counts the values and finds the NaN (and reports the mismatch)."""
    finite = np.array([0x3F80, 0xBF80, 0x7F7F, 0x4000], np.uint16)  # bf16 bits: 1, -1, largest finite, 2
    entry = {name: array_checksum(finite, name), f"finite_{name}": array_checksum(finite, name)}
    if name == "xxh3":
        assert entry == {"xxh3": REFERENCE["xxh3"](b"<u2(4,)" + finite.tobytes()), **checksum_fields(finite, True)}
    damaged = _flipped(finite, 5)  # 0x7F7F -> 0x7E7F: still finite
    nan = _flipped(finite, 4, 0x80)  # 0x7F7F -> 0x7FFF: exponent all ones, a NaN
    assert (~_bf16_isfinite(damaged)).sum() == 0 and (~_bf16_isfinite(nan)).sum() == 1
    counted = []
    count = verify_module.non_finite_count
    monkeypatch.setattr(verify_module, "non_finite_count", lambda *args: counted.append(1) or count(*args))
    for value, problems in ((finite, []), (damaged, ["frames/vision: checksum mismatch"]),
                            (nan, ["frames/vision: 1 non-finite values", "frames/vision: checksum mismatch"])):
        counted.clear()
        scanner = Scanner.for_entry(value, True, entry)
        copied = copy_in_blocks(value, scanner.update)
        assert scanner.result().finite is None
        assert content_problems("frames/vision", copied, True, entry, scanner.result()) == problems
        assert bool(counted) == (value is not finite), "the count runs exactly when the checksum differs"
