"""Stream the kept frames of a `.sens` (every stride-th) once: original JPEG bytes and raw poses into
frames.parquet (row groups of a few frames), depth into the scene's zarr array, and a callback per group of valid
frames, so memory stays bounded by a few frames whatever the stream length; later stages read the stored depth
back by kept position (`read_depth`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ross3d.arrow_build import arrow_array
from ross3d.scannet.sens import SensFrame, SensReader

FRAMES_SCHEMA = pa.schema([
    ("frame_idx", pa.int32()),
    ("pose", pa.list_(pa.float32(), 16)),
    ("valid", pa.bool_()),
    ("color_jpeg", pa.binary()),
])
_ROW_GROUP = 16


@dataclass
class KeptFrames:
    """What later stages need of the kept frames (the bytes and depth live on disk)."""

    frame_idx: np.ndarray  # (N,) int64, original .sens indices
    poses: np.ndarray  # (N, 4, 4) float32, raw camera-to-world
    valid: np.ndarray  # (N,) bool


def n_kept(num_frames: int, stride: int) -> int:
    return (num_frames + stride - 1) // stride


def _batch(rows: list[SensFrame]) -> pa.RecordBatch:
    columns = {"frame_idx": [r.index for r in rows], "valid": [r.valid for r in rows],
               "pose": np.stack([r.pose.reshape(16) for r in rows]).astype(np.float32),
               "color_jpeg": [r.color_jpeg for r in rows]}
    return pa.record_batch([arrow_array(columns[f.name], f.type) for f in FRAMES_SCHEMA], schema=FRAMES_SCHEMA)


def read_depth(depth, positions: np.ndarray) -> np.ndarray:
    """(len(positions), H, W) stored depth of the kept `positions` in their order, one slice read per run of
    consecutive increasing positions (an orthogonal selection of the same frames is several times slower in
    zarr)."""
    runs = np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)
    return np.concatenate([depth[int(run[0]):int(run[-1]) + 1] for run in runs])


def stream_kept_frames(reader: SensReader, stride: int, depth_out, frames_path: Path,
                       visit: Callable[[list[int], list[SensFrame]], None]) -> KeptFrames:
    """Write kept frame k's depth to `depth_out[k]` and its row to `frames_path` (both in groups of 16 frames);
    call `visit(positions, frames)` with the valid frames of each group and their kept positions. `depth_out` is
    an array-like of shape (n_kept, H, W) that takes slice assignment."""
    idx, poses, valid, pending = [], [], [], []

    def flush(writer: pq.ParquetWriter) -> None:
        start = len(idx) - len(pending)
        depth_out[start:len(idx)] = np.stack([f.depth for f in pending])  # one call: chunks written together
        writer.write_batch(_batch(pending))
        valid_at = [k for k, f in enumerate(pending) if f.valid]
        if valid_at:
            visit([start + k for k in valid_at], [pending[k] for k in valid_at])
        pending.clear()

    with pq.ParquetWriter(frames_path, FRAMES_SCHEMA, compression="none") as writer:
        for frame in reader.frames(stride):
            idx.append(frame.index)
            poses.append(frame.pose)
            valid.append(frame.valid)
            pending.append(frame)
            if len(pending) == _ROW_GROUP:
                flush(writer)
        if pending:
            flush(writer)
        if not idx:
            writer.write_table(FRAMES_SCHEMA.empty_table())
    return KeptFrames(np.asarray(idx, np.int64), np.asarray(poses, np.float32).reshape(-1, 4, 4),
                      np.asarray(valid, bool))
