"""ScanNet `.sens` v4 stream reader and writer.

The reader parses the header, then walks the frame records, seeking over the payload of frames it does not keep,
so a 1.5 GB stream is read in one pass with memory bounded by one frame. Colour stays as the original JPEG bytes;
depth is decompressed (zlib) to uint16 millimetres on request. Every malformed input raises `SensError`, whose
message names the file and, where it applies, the frame index.

Layout (little-endian): uint32 version (4), uint64 strlen, sensor name, 4 x float32[16] (colour intrinsics,
colour extrinsics, depth intrinsics, depth extrinsics; row-major), int32 colour and depth compression, uint32
colour w, h, depth w, h, float32 depth shift, uint64 frame count; then per frame float32[16] camera-to-world,
uint64 colour and depth timestamps, uint64 colour and depth byte sizes, the colour bytes, the depth bytes.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ross3d.errors import InputError

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
COLOR_JPEG = 2
DEPTH_RAW, DEPTH_ZLIB = 0, 1

_FRAME_HEAD = struct.Struct("<16f4Q")  # pose, timestamp colour/depth, colour size, depth size
_HEAD_TAIL = struct.Struct("<2i4IfQ")  # compressions, sizes, depth shift, frame count
_MAX_SENSOR_NAME = 4096
_MAX_SIDE = 16384


class SensError(InputError):
    """A `.sens` stream that cannot be read: wrong version, unsupported compression, truncated or garbled."""

    def __init__(self, path: str | Path, problem: str, frame: int | None = None):
        super().__init__(path, problem if frame is None else f"frame {frame}: {problem}")
        self.frame = frame


@dataclass(frozen=True)
class SensHeader:
    """The stream header; matrices are 4x4 float32, sizes are (width, height)."""

    sensor_name: str
    intrinsic_color: np.ndarray
    extrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    extrinsic_depth: np.ndarray
    color_compression: int
    depth_compression: int
    color_size: tuple[int, int]
    depth_size: tuple[int, int]
    depth_shift: float
    num_frames: int


@dataclass
class SensFrame:
    """One frame record; `depth` is None when the reader was asked not to decode it."""

    index: int
    pose: np.ndarray  # (4, 4) float32 camera-to-world, may hold -inf in real scans
    timestamp_color: int
    timestamp_depth: int
    color_jpeg: bytes
    depth: np.ndarray | None

    @property
    def valid(self) -> bool:
        return bool(np.isfinite(self.pose).all())


def _read_exact(f: BinaryIO, n: int, path: Path, what: str, frame: int | None = None) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SensError(path, f"truncated while reading {what}: expected {n} bytes, got {len(data)}", frame)
    return data


def _parse_header(f: BinaryIO, path: Path) -> SensHeader:
    (version,) = struct.unpack("<I", _read_exact(f, 4, path, "version"))
    if version != SENS_VERSION:
        raise SensError(path, f"unsupported .sens version {version} (expected {SENS_VERSION})")
    (strlen,) = struct.unpack("<Q", _read_exact(f, 8, path, "sensor name length"))
    if strlen > _MAX_SENSOR_NAME:
        raise SensError(path, f"garbled header: sensor name length {strlen}")
    name = _read_exact(f, strlen, path, "sensor name").decode("utf-8", errors="replace")
    mats = np.frombuffer(_read_exact(f, 4 * 64, path, "calibration matrices"), dtype="<f4").reshape(4, 4, 4)
    ccomp, dcomp, cw, ch, dw, dh, shift, n = _HEAD_TAIL.unpack(_read_exact(f, _HEAD_TAIL.size, path, "header"))
    if ccomp != COLOR_JPEG:
        raise SensError(path, f"unsupported colour compression {COLOR_COMPRESSION.get(ccomp, ccomp)!r} (need jpeg)")
    if dcomp not in (DEPTH_RAW, DEPTH_ZLIB):
        raise SensError(path, f"unsupported depth compression {DEPTH_COMPRESSION.get(dcomp, dcomp)!r}")
    if not (0 < cw <= _MAX_SIDE and 0 < ch <= _MAX_SIDE and 0 < dw <= _MAX_SIDE and 0 < dh <= _MAX_SIDE):
        raise SensError(path, f"garbled header: colour {cw}x{ch}, depth {dw}x{dh}")
    if not np.isfinite(shift) or shift <= 0:
        raise SensError(path, f"garbled header: depth shift {shift}")
    return SensHeader(
        sensor_name=name,
        intrinsic_color=mats[0].copy(),
        extrinsic_color=mats[1].copy(),
        intrinsic_depth=mats[2].copy(),
        extrinsic_depth=mats[3].copy(),
        color_compression=ccomp,
        depth_compression=dcomp,
        color_size=(cw, ch),
        depth_size=(dw, dh),
        depth_shift=float(shift),
        num_frames=int(n),
    )


class SensReader:
    """Streams a `.sens` file: `with SensReader(p) as r: for fr in r.frames(stride=10): ...`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb", buffering=1 << 20)
        except OSError as err:
            raise SensError(self.path, f"cannot open: {err.strerror}") from None
        self._size = os.fstat(self._file.fileno()).st_size
        try:
            self.header = _parse_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._frames_offset = self._file.tell()

    def __enter__(self) -> "SensReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def frames(self, stride: int = 1, decode_depth: bool = True) -> Iterator[SensFrame]:
        """Yield frames 0, stride, 2*stride, ...; skipped frames cost one 96-byte read and a seek."""
        if stride < 1:
            raise ValueError("stride must be >= 1")
        f, path, hdr = self._file, self.path, self.header
        f.seek(self._frames_offset)
        pos = self._frames_offset
        dw, dh = hdr.depth_size
        depth_nbytes = dw * dh * 2
        for i in range(hdr.num_frames):
            head = f.read(_FRAME_HEAD.size)
            if len(head) != _FRAME_HEAD.size:
                raise SensError(path, f"truncated: header promises {hdr.num_frames} frames, stream ends", i)
            values = _FRAME_HEAD.unpack(head)
            ts_c, ts_d, csize, dsize = values[16:]
            end = pos + _FRAME_HEAD.size + csize + dsize
            if end > self._size:
                what = "garbled" if csize > self._size or dsize > self._size else "truncated"
                raise SensError(path, f"{what}: record needs {csize}+{dsize} payload bytes past end of file", i)
            if i % stride:
                f.seek(csize + dsize, os.SEEK_CUR)
                pos = end
                continue
            color = f.read(csize)
            depth_raw = f.read(dsize)
            if len(color) != csize or len(depth_raw) != dsize:
                raise SensError(path, "truncated frame payload", i)
            if color[:2] != b"\xff\xd8":
                raise SensError(path, "garbled: colour payload is not a JPEG stream", i)
            depth = self._decode_depth(depth_raw, depth_nbytes, (dh, dw), i) if decode_depth else None
            pose = np.asarray(values[:16], dtype=np.float32).reshape(4, 4)
            yield SensFrame(i, pose, ts_c, ts_d, color, depth)
            pos = end

    def _decode_depth(self, raw: bytes, nbytes: int, shape: tuple[int, int], index: int) -> np.ndarray:
        if self.header.depth_compression == DEPTH_ZLIB:
            try:
                raw = zlib.decompress(raw)
            except zlib.error as err:
                raise SensError(self.path, f"garbled depth (zlib: {err})", index) from None
        if len(raw) != nbytes:
            raise SensError(self.path, f"garbled depth: {len(raw)} bytes, expected {nbytes}", index)
        return np.frombuffer(raw, dtype="<u2").reshape(shape)


class SensWriter:
    """Writes a `.sens` v4 stream (JPEG colour, zlib depth); the frame count is patched in on close.

    Writes go to `<path>.partial`, renamed on a clean close, so an interrupted write never looks complete.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        intrinsic_color: np.ndarray,
        intrinsic_depth: np.ndarray,
        color_size: tuple[int, int],
        depth_size: tuple[int, int],
        depth_shift: float = 1000.0,
        sensor_name: str = "StructureSensor",
        extrinsic_color: np.ndarray | None = None,
        extrinsic_depth: np.ndarray | None = None,
        zlib_level: int = 1,
    ):
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._depth_shape = (depth_size[1], depth_size[0])
        self._zlib_level = zlib_level
        self._count = 0
        eye = np.eye(4, dtype=np.float32)
        name = sensor_name.encode()
        self._file: BinaryIO = open(self._tmp, "wb")
        self._file.write(struct.pack("<IQ", SENS_VERSION, len(name)) + name)
        for m in (intrinsic_color, extrinsic_color if extrinsic_color is not None else eye,
                  intrinsic_depth, extrinsic_depth if extrinsic_depth is not None else eye):
            self._file.write(np.asarray(m, dtype="<f4").reshape(16).tobytes())
        self._file.write(_HEAD_TAIL.pack(COLOR_JPEG, DEPTH_ZLIB, *color_size, *depth_size, depth_shift, 0)[:-8])
        self._count_offset = self._file.tell()
        self._file.write(struct.pack("<Q", 0))

    def write_frame(
        self, pose: np.ndarray, color_jpeg: bytes, depth: np.ndarray, timestamp_color: int = 0,
        timestamp_depth: int = 0,
    ) -> None:
        if depth.shape != self._depth_shape or depth.dtype != np.uint16:
            raise ValueError(f"depth must be uint16 {self._depth_shape}, got {depth.dtype} {depth.shape}")
        depth_z = zlib.compress(np.ascontiguousarray(depth, dtype="<u2").tobytes(), self._zlib_level)
        pose_bytes = np.asarray(pose, dtype="<f4").reshape(16).tobytes()
        self._file.write(pose_bytes + struct.pack("<4Q", timestamp_color, timestamp_depth, len(color_jpeg),
                                                  len(depth_z)))
        self._file.write(color_jpeg)
        self._file.write(depth_z)
        self._count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(self._count_offset)
        self._file.write(struct.pack("<Q", self._count))
        self._file.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> "SensWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
