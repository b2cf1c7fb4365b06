"""Scene-record checksums and the finiteness pass of the trainer's first read: CRC32C against a bitwise CRC32C
written here from its definition (checked on the standard check value), sha256 records of older caches, and bf16 bit
patterns of every class (docs/data-format.md, "scene.json")."""

import hashlib

import numpy as np
import pytest

from ross3d.cache import checksum
from ross3d.cache.checksum import array_crc32c, computed, recorded
from ross3d.cache.verify import all_finite, content_problems


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


@pytest.mark.parametrize("block", [4, 5, 1 << 19])
def test_array_crc32c_is_crc32c_of_header_and_bytes_across_blocks(monkeypatch, block):
    monkeypatch.setattr(checksum, "CRC_BLOCK", block)
    a = np.arange(37, dtype=np.int16).reshape(1, 37)[:, ::-1]  # not C-contiguous: hashed in C order
    data = b"<i2(1, 37)" + bytes(b for v in range(36, -1, -1) for b in (v, 0))
    assert array_crc32c(a) == f"{_crc32c_bitwise(data):08x}"
    empty = np.zeros((0, 3), np.float32)
    assert array_crc32c(empty) == f"{_crc32c_bitwise(b'<f4(0, 3)'):08x}"


def test_old_sha256_entries_still_verify():
    a = np.array([[1.5, -2.0]], np.float32)
    digest = hashlib.sha256(b"<f4(1, 2)" + bytes.fromhex("0000c03f000000c0")).hexdigest()
    old = {"shape": [1, 2], "dtype": "<f4", "sha256": digest}
    assert recorded(old) == digest and computed(a, old) == digest
    assert content_problems("bev/vae_mean", a, False, old) == []
    assert content_problems("bev/vae_mean", a * 2, False, old) == ["bev/vae_mean: checksum mismatch"]
    assert content_problems("bev/vae_mean", a, False, {"shape": [1, 2], "dtype": "<f4"}) == \
        ["bev/vae_mean: no checksum recorded"]


# bf16 bit patterns: +-0, smallest subnormal, largest finite, +-inf, quiet and signalling NaNs of both signs
FINITE = [0x0000, 0x8000, 0x0001, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80]
NON_FINITE = [0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF]


@pytest.mark.parametrize("repeat", [3, 5000])  # 5000: long enough for the vectorised loops and their tails
def test_bf16_finiteness_of_every_class_anywhere(repeat):
    finite = np.array(FINITE * repeat, np.uint16).reshape(repeat, 7)
    assert all_finite(finite, bf16=True) and all_finite(finite[:0], bf16=True)
    for pattern in NON_FINITE:
        for position in (0, 10, finite.size - 1):
            bits = finite.copy().reshape(-1)
            bits[position] = pattern
            assert not all_finite(bits.reshape(finite.shape), bf16=True), (hex(pattern), position)
            entry = {"crc32c": array_crc32c(bits)}
            assert content_problems("frames/vision", bits, True, entry) == ["frames/vision: 1 non-finite values"]


def test_float_finiteness_and_box_padding():
    values = np.array([0.0, -1e38, 3.4e38, np.nan, np.inf, -np.inf], np.float32)
    assert all_finite(values[:3], bf16=False) and not all_finite(values, bf16=False)
    entry = {"crc32c": array_crc32c(values)}
    assert content_problems("bev/vae_mean", values, False, entry) == ["bev/vae_mean: 3 non-finite values"]
    assert content_problems("objects/boxes", values, False, entry) == []  # NaN boxes are the format's padding
