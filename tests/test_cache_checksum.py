"""Scene-record checksums and the finiteness pass of the trainer's first read: CRC32C against a bitwise CRC32C
written here from its definition (checked on the standard check value), also when computed block by block during a
copy (ross3d.cache.scan), sha256 records of older caches, and bf16 and IEEE float bit patterns of every class, at
block boundaries, against torch's and numpy's own isfinite (docs/data-format.md, "scene.json")."""

import hashlib

import numpy as np
import pytest
import torch

from ross3d.cache import scan as scan_module
from ross3d.cache.checksum import array_crc32c, computed, recorded
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


def test_reference_crc32c_gives_the_standard_check_value():
    assert _crc32c_bitwise(b"123456789") == 0xE3069283  # RFC 3720 (iSCSI), the CRC-32C check value


def test_array_crc32c_is_crc32c_of_header_and_bytes():
    a = np.arange(37, dtype=np.int16).reshape(1, 37)[:, ::-1]  # not C-contiguous: hashed in C order
    data = b"<i2(1, 37)" + bytes(b for v in range(36, -1, -1) for b in (v, 0))
    assert array_crc32c(a) == f"{_crc32c_bitwise(data):08x}"
    empty = np.zeros((0, 3), np.float32)
    assert array_crc32c(empty) == f"{_crc32c_bitwise(b'<f4(0, 3)'):08x}"


@pytest.mark.parametrize("block", [4, 5, 6, 1 << 19])  # bytes: 2, 2, 3 and all 37 int16 values per block
def test_scan_and_checked_copy_give_the_crc32c_across_blocks(monkeypatch, block):
    monkeypatch.setattr(scan_module, "SCAN_BLOCK", block)
    a = np.arange(37, dtype=np.int16).reshape(1, 37)[:, ::-1]
    expected = f"{_crc32c_bitwise(b'<i2(1, 37)' + bytes(b for v in range(36, -1, -1) for b in (v, 0))):08x}"
    assert scan(a, bf16=False).crc32c == expected and scan(a, bf16=False).finite
    src = np.ascontiguousarray(a)
    scanner, seen = Scanner(src, bf16=False), []
    copied = copy_in_blocks(src, lambda b: (seen.append(b.size), scanner.update(b)))
    assert copied.tobytes() == src.tobytes() and copied.shape == (1, 37) and not np.shares_memory(copied, src)
    per_block = max(1, block // 2)
    assert seen == [per_block] * (37 // per_block) + ([37 % per_block] if 37 % per_block else [])
    assert scanner.result().crc32c == expected
    assert copy_in_blocks(src).tobytes() == src.tobytes()


def test_old_sha256_entries_still_verify():
    a = np.array([[1.5, -2.0]], np.float32)
    digest = hashlib.sha256(b"<f4(1, 2)" + bytes.fromhex("0000c03f000000c0")).hexdigest()
    old = {"shape": [1, 2], "dtype": "<f4", "sha256": digest}
    assert recorded(old) == digest and computed(a, old) == digest
    assert content_problems("bev/vae_mean", a, False, old) == []
    assert content_problems("bev/vae_mean", a * 2, False, old) == ["bev/vae_mean: checksum mismatch"]
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
            entry = {"crc32c": array_crc32c(bits)}
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
            assert scanner.result() == scan_module.Scan(array_crc32c(bits), False), (position, hex(pattern))
    scanner = Scanner(finite, bf16=True)
    copy_in_blocks(finite, scanner.update)
    assert scanner.result() == scan_module.Scan(array_crc32c(finite), True)


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
    entry = {"crc32c": array_crc32c(values)}
    assert content_problems("bev/vae_mean", values, False, entry) == ["bev/vae_mean: 3 non-finite values"]
    assert content_problems("objects/boxes", values, False, entry) == []  # NaN boxes are the format's padding
    assert scan(np.arange(5, dtype=np.int32), bf16=False).finite  # integers are never checked for finiteness


def test_the_writer_attests_finiteness_only_for_finite_float_data():
    finite, with_nan = np.array([1.5, -2.0], np.float32), np.array([1.5, np.nan], np.float32)
    crc = array_crc32c(finite)
    assert checksum_fields(finite, bf16=False) == {"crc32c": crc, "finite_crc32c": crc}
    assert checksum_fields(with_nan, bf16=False) == {"crc32c": array_crc32c(with_nan)}
    ints = np.arange(4, dtype=np.int16)
    assert checksum_fields(ints, bf16=False) == {"crc32c": array_crc32c(ints)}
    inf_bits = np.array([0x3F80, 0x7F80], np.uint16)  # 1.0, +inf as bf16 bits
    assert checksum_fields(inf_bits, bf16=True) == {"crc32c": array_crc32c(inf_bits)}
    assert checksum_fields(inf_bits, bf16=False) == {"crc32c": array_crc32c(inf_bits)}  # plain uint16: no floats


def test_a_pass_without_finiteness_trusts_only_the_attested_bytes():
    finite = np.array([0x3F80, 0xBF80, 0x7F7F], np.uint16)
    nan = np.array([0x3F80, 0xBF80, 0xFFC0], np.uint16)  # the last value a negative NaN
    skipped = Scanner(nan, bf16=True, check_finite=False)
    skipped.update(nan)
    assert skipped.result() == scan_module.Scan(array_crc32c(nan), None)
    ints = Scanner(np.arange(3, dtype=np.int32), bf16=False, check_finite=False)
    assert ints.result().finite is True  # integers: nothing to check
    attested = {"crc32c": array_crc32c(finite), "finite_crc32c": array_crc32c(finite)}
    lean = Scanner(finite, bf16=True, check_finite=False)
    lean.update(finite)
    assert content_problems("frames/vision", finite, True, attested, lean.result()) == []
    # bytes rewritten with a NaN and their crc32c updated: the attestation names other bytes, so they are counted
    stale = {"crc32c": array_crc32c(nan), "finite_crc32c": array_crc32c(finite)}
    assert content_problems("frames/vision", nan, True, stale, skipped.result()) == \
        ["frames/vision: 1 non-finite values"]
    assert content_problems("frames/vision", nan, True, {"crc32c": array_crc32c(nan)}, skipped.result()) == \
        ["frames/vision: 1 non-finite values"]
    # the limit: an attestation forged for NaN bytes passes a read that skips finiteness; verify's full pass does not
    forged = {"crc32c": array_crc32c(nan), "finite_crc32c": array_crc32c(nan)}
    assert content_problems("frames/vision", nan, True, forged, skipped.result()) == []
    assert content_problems("frames/vision", nan, True, forged) == ["frames/vision: 1 non-finite values"]
