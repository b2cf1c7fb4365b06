"""Reader of the generic posed RGB-D layout (`prep scannet --source posed-rgbd`, docs/posed-rgbd.md), one folder
per scene:

    <scene>/color/<n>.jpg       colour JPEG (bytes kept verbatim)
    <scene>/depth/<n>.png       16-bit depth; metres = value / depth_scale (`--depth-scale`, default 1000: mm)
    <scene>/pose/<n>.txt        4x4 camera-to-world (camera x right, y down, z forward, as ScanNet); non-finite
                                values mark a frame without a pose
    <scene>/intrinsic_depth.txt 3x3 or 4x4 pinhole matrix of the depth images
    <scene>/intrinsic_color.txt the colour images' matrix; optional when colour and depth share size and camera

`<n>` is the frame number (digits, any zero padding), the same stem in the three folders; frames are taken in
number order. Depth is converted to millimetres (the PREP contract: raw depth as ScanNet stores it), rounded;
a reading beyond 65.535 m becomes 0 (no reading). Frame records are those of the posed_images export
(ross3d.scannet.posed_images.PosedFrame). Every malformed file raises InputError naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ross3d.errors import InputError
from ross3d.scannet.posed_images import PosedFrame, read_depth_png, read_jpeg_bytes, read_matrix_txt

MM_PER_M = 1000.0


def read_intrinsic_txt(path: Path) -> np.ndarray:
    """A 3x3 or 4x4 pinhole matrix written as text, as 4x4."""
    try:
        values = [float(x) for x in path.read_text().split()]
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, "not a matrix of numbers") from None
    if len(values) == 16:
        return np.reshape(values, (4, 4))
    if len(values) != 9:
        raise InputError(path, f"expected 9 (3x3) or 16 (4x4) numbers, found {len(values)}")
    k = np.eye(4)
    k[:3, :3] = np.reshape(values, (3, 3))
    return k


def depth_in_millimetres(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    """uint16 millimetres of raw depth values in units of 1/depth_scale metres (0 beyond 65.535 m)."""
    if depth_scale == MM_PER_M:
        return raw
    mm = np.rint(raw.astype(np.float64) * (MM_PER_M / depth_scale))
    return np.where(mm > np.iinfo(np.uint16).max, 0, mm).astype(np.uint16)


class PosedRgbdScene:
    """One scene folder of the layout in the module docstring."""

    def __init__(self, root: str | Path, depth_scale: float = MM_PER_M):
        self.root = Path(root)
        self.depth_scale = depth_scale
        if not self.root.is_dir():
            raise InputError(self.root, "posed RGB-D scene folder not found")
        stems = sorted((p.stem for p in (self.root / "color").glob("*.jpg") if p.stem.isdigit()), key=int)
        if len({int(s) for s in stems}) != len(stems):
            raise InputError(self.root / "color", "two colour files share a frame number")
        self.stems = {int(s): s for s in stems}
        self.intrinsic_depth = read_intrinsic_txt(self.root / "intrinsic_depth.txt")
        color_k = self.root / "intrinsic_color.txt"
        self.intrinsic_color = read_intrinsic_txt(color_k) if color_k.is_file() else None

    @property
    def frame_indices(self) -> list[int]:
        return list(self.stems)

    def color_path(self, index: int) -> Path:
        return self.root / "color" / f"{self.stems[index]}.jpg"

    def depth_path(self, index: int) -> Path:
        return self.root / "depth" / f"{self.stems[index]}.png"

    def read_depth(self, index: int) -> np.ndarray:
        """The frame's depth in millimetres."""
        return depth_in_millimetres(read_depth_png(self.depth_path(index)), self.depth_scale)

    def frames(self, stride: int = 1) -> Iterator[PosedFrame]:
        """Frames whose number is a multiple of `stride`, in number order."""
        for index, stem in self.stems.items():
            if index % stride:
                continue
            color = read_jpeg_bytes(self.color_path(index))
            pose = read_matrix_txt(self.root / "pose" / f"{stem}.txt")
            yield PosedFrame(index, pose, color, self.read_depth(index))
