"""The .sens v4 reader and writer: round trip, stride, invalid poses, and every malformed-input error."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from ross3d.scannet.sens import SensError, SensReader, SensWriter

COLOR_WH, DEPTH_WH = (64, 48), (40, 30)


def _jpeg(rng: np.random.Generator) -> bytes:
    img = rng.integers(0, 255, (COLOR_WH[1], COLOR_WH[0], 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture
def stream(tmp_path):
    """A 12-frame stream with frames 3 and 7 invalid; returns (path, written frames)."""
    rng = np.random.default_rng(0)
    k_color = np.diag([50.0, 50.0, 1.0, 1.0]).astype(np.float32)
    k_depth = np.diag([30.0, 30.0, 1.0, 1.0]).astype(np.float32)
    written = []
    path = tmp_path / "scene.sens"
    with SensWriter(path, intrinsic_color=k_color, intrinsic_depth=k_depth, color_size=COLOR_WH,
                    depth_size=DEPTH_WH) as w:
        for i in range(12):
            pose = np.eye(4, dtype=np.float32)
            pose[:3, 3] = rng.normal(size=3)
            if i in (3, 7):
                pose[:] = -np.inf
            color = _jpeg(rng)
            depth = rng.integers(0, 8000, (DEPTH_WH[1], DEPTH_WH[0])).astype(np.uint16)
            w.write_frame(pose, color, depth, timestamp_color=1000 + i, timestamp_depth=2000 + i)
            written.append((pose, color, depth))
    return path, written


def test_round_trip_bytes_equal(stream):
    path, written = stream
    with SensReader(path) as r:
        assert r.header.num_frames == 12
        assert r.header.color_size == COLOR_WH and r.header.depth_size == DEPTH_WH
        assert r.header.depth_shift == 1000.0
        assert r.header.intrinsic_depth[0, 0] == 30.0
        frames = list(r.frames())
    assert [f.index for f in frames] == list(range(12))
    for f, (pose, color, depth) in zip(frames, written):
        assert f.color_jpeg == color
        np.testing.assert_array_equal(f.depth, depth)
        np.testing.assert_array_equal(f.pose, pose)
        assert f.timestamp_color == 1000 + f.index and f.timestamp_depth == 2000 + f.index


def test_stride_and_invalid_frames(stream):
    path, written = stream
    with SensReader(path) as r:
        kept = list(r.frames(stride=3, decode_depth=False))
    assert [f.index for f in kept] == [0, 3, 6, 9]
    assert [f.valid for f in kept] == [True, False, True, True]
    assert all(f.depth is None for f in kept)
    assert kept[2].color_jpeg == written[6][1]


def test_no_partial_file_is_left_on_writer_error(tmp_path):
    path = tmp_path / "x.sens"
    eye = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError):
        with SensWriter(path, intrinsic_color=eye, intrinsic_depth=eye, color_size=COLOR_WH, depth_size=DEPTH_WH) as w:
            w.write_frame(eye, b"\xff\xd8", np.zeros((3, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []


def _expect_error(path, *needles, stride=1):
    with pytest.raises(SensError) as info:
        with SensReader(path) as r:
            for _ in r.frames(stride=stride):
                pass
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message
    return info.value


def test_truncated_stream_names_the_frame(stream):
    path, _ = stream
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    err = _expect_error(path, "frame 11", "truncated")
    assert err.frame == 11
    # Seeking over the damaged frame still detects it: the payload would extend past the end of the file.
    _expect_error(path, "frame 11", stride=11)


def test_stream_cut_inside_header(stream):
    path, _ = stream
    path.write_bytes(path.read_bytes()[:30])
    _expect_error(path, "truncated")


def test_fewer_frames_than_header_promises(stream):
    path, _ = stream
    data = bytearray(path.read_bytes())
    # Patch the frame count (last 8 bytes of the header) to promise more frames than exist.
    with SensReader(path) as r:
        count_offset = r._frames_offset - 8
    data[count_offset:count_offset + 8] = struct.pack("<Q", 20)
    path.write_bytes(bytes(data))
    _expect_error(path, "frame 12", "promises 20 frames")


def test_wrong_version(stream):
    path, _ = stream
    data = bytearray(path.read_bytes())
    data[:4] = struct.pack("<I", 3)
    path.write_bytes(bytes(data))
    _expect_error(path, "version 3")


def _patch_header_int(path, field_index: int, value: int):
    """Overwrite one int32/uint32 of the header tail (0 colour comp, 1 depth comp, 2.. sizes)."""
    with SensReader(path) as r:
        tail_offset = r._frames_offset - 8 - 28
    data = bytearray(path.read_bytes())
    off = tail_offset + 4 * field_index
    data[off:off + 4] = struct.pack("<i", value)
    path.write_bytes(bytes(data))


def test_unsupported_compressions(stream, tmp_path):
    path, _ = stream
    original = path.read_bytes()
    _patch_header_int(path, 0, 1)  # png colour
    _expect_error(path, "colour compression", "png")
    path.write_bytes(original)
    _patch_header_int(path, 1, 2)  # occi depth
    _expect_error(path, "depth compression", "occi_ushort")


def test_garbled_depth_payload(stream):
    path, written = stream
    data = bytearray(path.read_bytes())
    # Corrupt the zlib stream of frame 0's depth: it follows frame 0's colour bytes.
    with SensReader(path) as r:
        start = r._frames_offset + 96 + len(written[0][1])
    data[start + 2:start + 40] = b"\x00" * 38
    path.write_bytes(bytes(data))
    _expect_error(path, "frame 0", "garbled depth")


def test_garbled_frame_sizes(stream):
    path, _ = stream
    data = bytearray(path.read_bytes())
    with SensReader(path) as r:
        size_offset = r._frames_offset + 64 + 16  # colour size of frame 0
    data[size_offset:size_offset + 8] = struct.pack("<Q", 1 << 60)
    path.write_bytes(bytes(data))
    _expect_error(path, "frame 0", "garbled")


def test_missing_file(tmp_path):
    with pytest.raises(SensError, match="cannot open"):
        SensReader(tmp_path / "absent.sens")


def test_a_stream_packed_field_by_field_from_the_documented_layout(tmp_path):
    """Bytes built here one field at a time from docs/original-data.md B.2, not by SensWriter: a 3-frame stream
    with a sensor name, distinct calibration matrices, a -inf pose, zlib depth and trailing bytes after the last
    frame (which the layout says are ignored)."""
    rng = np.random.default_rng(7)
    cw, ch, dw, dh = 32, 24, 8, 6
    mats = [np.arange(16, dtype=np.float32) + 100 * m for m in range(4)]
    out = bytearray()
    out += struct.pack("<I", 4)
    out += struct.pack("<Q", len(b"StructureSensor")) + b"StructureSensor"
    for m in mats:
        out += struct.pack("<16f", *m.tolist())
    out += struct.pack("<i", 2) + struct.pack("<i", 1)  # jpeg colour, zlib ushort depth
    out += struct.pack("<I", cw) + struct.pack("<I", ch) + struct.pack("<I", dw) + struct.pack("<I", dh)
    out += struct.pack("<f", 1000.0) + struct.pack("<Q", 3)
    frames = []
    for i in range(3):
        pose = np.full(16, -np.inf, np.float32) if i == 1 else (np.arange(16, dtype=np.float32) * (i + 1))
        color = cv2.imencode(".jpg", rng.integers(0, 255, (ch, cw, 3), dtype=np.uint8))[1].tobytes()
        depth = rng.integers(0, 5000, (dh, dw)).astype("<u2")
        packed = zlib.compress(depth.tobytes())
        out += struct.pack("<16f", *pose.tolist())
        out += struct.pack("<Q", 10 + i) + struct.pack("<Q", 20 + i)
        out += struct.pack("<Q", len(color)) + struct.pack("<Q", len(packed))
        out += color + packed
        frames.append((pose.reshape(4, 4), color, depth))
    out += b"trailing bytes after the last frame"
    path = tmp_path / "hand.sens"
    path.write_bytes(bytes(out))

    with SensReader(path) as reader:
        h = reader.header
        assert h.sensor_name == "StructureSensor" and h.num_frames == 3 and h.depth_shift == 1000.0
        assert h.color_size == (cw, ch) and h.depth_size == (dw, dh)
        for got, want in zip((h.intrinsic_color, h.extrinsic_color, h.intrinsic_depth, h.extrinsic_depth), mats,
                             strict=True):
            np.testing.assert_array_equal(got, want.reshape(4, 4))
        read = list(reader.frames())
    assert [f.index for f in read] == [0, 1, 2] and [f.valid for f in read] == [True, False, True]
    for f, (pose, color, depth) in zip(read, frames, strict=True):
        np.testing.assert_array_equal(f.pose, pose)
        assert f.color_jpeg == color and f.depth.dtype == np.uint16
        np.testing.assert_array_equal(f.depth, depth)
    assert [(f.timestamp_color, f.timestamp_depth) for f in read] == [(10, 20), (11, 21), (12, 22)]
