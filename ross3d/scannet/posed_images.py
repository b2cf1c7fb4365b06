"""Readers for the data Ross3D / Video-3D-LLM users already downloaded instead of raw `.sens` streams.

- the `posed_images` export: `DIR/<scene>/<idx5>.jpg` (colour, bytes kept verbatim), `<idx5>.png` (16-bit depth, mm),
  `<idx5>.txt` (4x4 camera-to-world; `-inf`/`nan` text marks an invalid pose), `intrinsic.txt`, `depth_intrinsic.txt`;
- EmbodiedScan info pkls (`data_list` items with `sample_idx` "scannet/<scene>", `axis_align_matrix`,
  `depth_cam2img`, `images[*].img_path`), read with ross3d.safe_pickle (plain data and numpy only, never code);
- the released BEV images `<scene>/view_0.jpg`, prepared exactly as the original loader does;
- the original's `scannet_select_frames.json` (max-coverage output) and `scannet_{split}_{gt,pred}_box.json`.
Every malformed file raises InputError naming its path.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ross3d.errors import InputError
from ross3d.safe_names import check_scene_id
from ross3d.safe_pickle import load_restricted


def read_matrix_txt(path: Path) -> np.ndarray:
    """A 4x4 matrix written as text rows (`%f` values); `inf`/`nan` parse as such (invalid poses)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    try:
        values = [float(x) for x in text.split()]
    except ValueError:
        raise InputError(path, "not a 4x4 matrix of numbers") from None
    if len(values) != 16:
        raise InputError(path, f"expected 16 numbers for a 4x4 matrix, found {len(values)}")
    return np.asarray(values, dtype=np.float64).reshape(4, 4)


def read_depth_png(path: Path) -> np.ndarray:
    """A 16-bit single-channel PNG as uint16 (H, W)."""
    import cv2

    if not path.is_file():
        raise InputError(path, "depth file missing for a listed frame")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise InputError(path, "not a 16-bit single-channel depth PNG")
    return depth


def read_jpeg_bytes(path: Path) -> bytes:
    """A colour file's bytes, checked to be a JPEG (they are kept verbatim)."""
    try:
        color = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "colour file missing for a listed frame") from None
    if color[:2] != b"\xff\xd8":
        raise InputError(path, "not a JPEG file")
    return color


def frame_index_of(path: str | Path) -> int:
    """The original frame index encoded in a file stem (`00120.jpg` -> 120)."""
    stem = Path(path).stem
    if not stem.isdigit():
        raise InputError(path, "file name is not a frame index")
    return int(stem)


@dataclass
class PosedFrame:
    """One exported frame: original index, raw camera-to-world pose, JPEG bytes, uint16 depth in mm."""

    index: int
    pose: np.ndarray
    color_jpeg: bytes
    depth: np.ndarray

    @property
    def valid(self) -> bool:
        return bool(np.isfinite(self.pose).all())


@dataclass
class PosedImagesScene:
    """One scene folder of the posed_images export; `frame_indices` defaults to the jpg files present."""

    root: Path
    frame_indices: list[int] | None = None
    intrinsic_depth: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise InputError(self.root, "posed_images scene folder not found")
        if self.frame_indices is None:
            self.frame_indices = sorted(frame_index_of(p) for p in self.root.glob("*.jpg") if p.stem.isdigit())
        if self.intrinsic_depth is None:
            self.intrinsic_depth = read_matrix_txt(self.root / "depth_intrinsic.txt")

    @property
    def intrinsic_color(self) -> np.ndarray:
        return read_matrix_txt(self.root / "intrinsic.txt")

    def _file(self, index: int, ext: str) -> Path:
        return self.root / f"{index:05d}.{ext}"

    def read_depth(self, index: int) -> np.ndarray:
        return read_depth_png(self._file(index, "png"))

    def frames(self, stride: int = 1) -> Iterator[PosedFrame]:
        """Frames whose original index is a multiple of `stride`, in index order."""
        for index in self.frame_indices:
            if index % stride:
                continue
            color = read_jpeg_bytes(self._file(index, "jpg"))
            pose = read_matrix_txt(self._file(index, "txt"))
            yield PosedFrame(index, pose, color, self.read_depth(index))


@dataclass
class EmbodiedScanScene:
    """What the EmbodiedScan infos say about one ScanNet scene."""

    scene_id: str
    axis_align_matrix: np.ndarray | None
    depth_cam2img: np.ndarray | None
    cam2img: np.ndarray | None
    frame_indices: list[int] = field(default_factory=list)


def _matrix_or_none(value) -> np.ndarray | None:
    if value is None:
        return None
    m = np.asarray(value, dtype=np.float64)
    if m.shape == (3, 3):
        m4 = np.eye(4)
        m4[:3, :3] = m
        m = m4
    return m if m.shape == (4, 4) else None


def load_embodiedscan_infos(paths: list[str | Path]) -> dict[str, EmbodiedScanScene]:
    """ScanNet scenes of one or more `embodiedscan_infos_{split}.pkl` files, keyed by scene id."""
    scenes: dict[str, EmbodiedScanScene] = {}
    for path in map(Path, paths):
        data = load_restricted(path)
        items = data.get("data_list") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputError(path, "missing 'data_list'")
        for item in items:
            sample_idx = str(item.get("sample_idx", ""))
            if not sample_idx.startswith("scannet/"):
                continue
            scene_id = check_scene_id(sample_idx.split("/", 1)[1], path, f"{sample_idx}: scene id")
            try:
                indices = [frame_index_of(img["img_path"]) for img in item.get("images", [])]
            except (KeyError, TypeError):
                raise InputError(path, f"{sample_idx}: images without img_path") from None
            scenes[scene_id] = EmbodiedScanScene(
                scene_id,
                _matrix_or_none(item.get("axis_align_matrix")),
                _matrix_or_none(item.get("depth_cam2img")),
                _matrix_or_none(item.get("cam2img")),
                indices,
            )
    return scenes


def load_released_bev(path: str | Path, depth_size: tuple[int, int], size: int = 432) -> tuple[np.ndarray, np.ndarray]:
    """A released `view_0.jpg` prepared as the original loader: PIL bicubic resize to (int(W*size/H), size) with the
    DEPTH frame's (W, H), centre crop `size` (left = (width - size) // 2). Returns RGB uint8 and non-black mask."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    except FileNotFoundError:
        raise InputError(path, "BEV image not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(path, f"not a readable image ({err})") from None
    width = int(depth_size[0] * size / depth_size[1])
    resized = image.resize((width, size), Image.BICUBIC)
    left = (width - size) // 2
    rgb = np.asarray(resized.crop((left, 0, left + size, size)), dtype=np.uint8).copy()
    return rgb, rgb.any(axis=-1)


@dataclass
class ReleasedSelection:
    """One scene of `scannet_select_frames.json`: frames in selection order, their gains, coverage counts."""

    frame_indices: list[int]
    gains: list[int]
    num_all_voxels: int | None
    num_select_voxels: int | None

    def consumer_frames(self, num_frames: int) -> tuple[list[int], list[int]]:
        """As the original consumer: the first `num_frames` picks, then sorted by frame number (with their gains)."""
        picked = sorted(zip(self.frame_indices[:num_frames], self.gains[:num_frames]))
        return [f for f, _ in picked], [g for _, g in picked]


def load_selection_file(path: str | Path) -> dict[str, ReleasedSelection]:
    """The original's max-coverage output (docs/original-data.md B.7), keyed by scene id."""
    path = Path(path)
    records = _load_json(path)
    if not isinstance(records, list):
        raise InputError(path, "expected a list of per-scene records")
    out = {}
    for k, rec in enumerate(records):
        try:
            scene_id = str(rec["video_id"]).split("/")[-1]
            frames = [frame_index_of(p) for p in rec["frame_files"]]
            gains = [int(g) for g in rec.get("voxel_nums", [0] * len(frames))]
        except (KeyError, TypeError, ValueError, InputError) as err:
            raise InputError(path, f"record {k}: malformed ({err})") from None
        check_scene_id(scene_id, path, f"record {k}: scene id")
        out[scene_id] = ReleasedSelection(frames, gains, rec.get("num_all_voxels"), rec.get("num_select_voxels"))
    return out


def load_box_file(path: str | Path) -> dict[str, np.ndarray]:
    """`scannet_{split}_{gt,pred}_box.json`: {"scannet/<scene>": [[cx,cy,cz,dx,dy,dz], ...]} -> (K, 6) float32."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected an object keyed by 'scannet/<scene>'")
    out = {}
    for key, boxes in data.items():
        try:
            arr = np.asarray(boxes, dtype=np.float32).reshape(len(boxes), 6)
        except (ValueError, TypeError):
            raise InputError(path, f"{key}: boxes must be lists of 6 numbers") from None
        out[check_scene_id(key.split("/")[-1], path, f"{key}: scene id")] = arr
    return out


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
