"""Where a scene's inputs come from, for `ross3d prep scannet`.

Frames come from a *frame source*: the raw `.sens` stream (default), the posed_images export of the original
(`--source posed-images`) or the generic posed RGB-D layout (`--source posed-rgbd`, ross3d.scannet.posed_rgbd); all
give the same frame records (original index, raw camera-to-world pose, colour JPEG bytes kept verbatim, uint16 depth
in mm) and a header (intrinsics, frame sizes, depth shift), so the job streams them the same way. The scene's other
inputs (axis alignment, mesh, objects) are gathered by `load_scene_inputs`: with the posed_images and posed RGB-D
sources the mesh and annotations are optional (their absence is reported as warnings naming the outputs that are
missing), the axis alignment may come from EmbodiedScan infos, and object boxes may come from the original's
`scannet_{split}_gt_box.json` (`--boxes-file`) when segments and aggregation are absent. Files that change outputs
enter the options fingerprint through `SourceOptions.fingerprint_fields`. With `--fuse-mesh` a missing mesh is
no error nor warning with any source: the job fuses one from the frames (ross3d.prep.fusion).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ross3d.errors import ConfigError, InputError
from ross3d.safe_names import child_path
from ross3d.scannet.posed_images import (
    EmbodiedScanScene, PosedImagesScene, load_box_file, load_embodiedscan_infos, load_selection_file,
    read_matrix_txt,
)
from ross3d.scannet.posed_rgbd import MM_PER_M, PosedRgbdScene
from ross3d.scannet.scene import SceneMesh, read_axis_alignment, read_mesh, read_objects, scan_paths

log = logging.getLogger(__name__)
SOURCES = ("sens", "posed-images", "posed-rgbd")
POSED_DEPTH_SHIFT = 1000.0  # the export's PNG depth is millimetres


@dataclass(frozen=True)
class SourceOptions:
    """Input choices of a prep run (paths as given); `fingerprint_fields` is what of them changes the outputs."""

    source: str = "sens"
    posed_images: str | None = None
    embodiedscan_infos: tuple[str, ...] = ()
    bev_images: str | None = None
    selection_file: str | None = None
    boxes_file: str | None = None
    rgbd: str | None = None
    depth_scale: float = MM_PER_M

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "posed-images" and not self.posed_images:
            raise ConfigError("--source posed-images needs --posed-images DIR")
        if self.source != "posed-images" and (self.posed_images or self.embodiedscan_infos):
            raise ConfigError("--posed-images and --embodiedscan-infos need --source posed-images")
        if self.source == "posed-rgbd" and not self.rgbd:
            raise ConfigError("--source posed-rgbd needs --rgbd DIR")
        if self.source != "posed-rgbd" and (self.rgbd or self.depth_scale != MM_PER_M):
            raise ConfigError("--rgbd and --depth-scale need --source posed-rgbd")
        if not self.depth_scale > 0:
            raise ConfigError(f"--depth-scale must be > 0, got {self.depth_scale}")

    @property
    def frames_dir(self) -> str | None:
        """The folder of per-scene frame folders, None for the `.sens` source."""
        return {"posed-images": self.posed_images, "posed-rgbd": self.rgbd}.get(self.source)

    def check_paths(self) -> None:
        """Fail before any work when a given folder or file does not exist."""
        dirs = [self.posed_images, self.rgbd, self.bev_images]
        files = [*self.embodiedscan_infos, self.selection_file, self.boxes_file]
        for path in filter(None, dirs):
            if not Path(path).is_dir():
                raise InputError(path, "folder not found")
        for path in filter(None, files):
            if not Path(path).is_file():
                raise InputError(path, "file not found")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def fingerprint_fields(self) -> dict:
        """Empty for the defaults (a plain `.sens` run keeps its fingerprint); else the source kind, the BEV
        source, the depth scale of the posed RGB-D source and the sha256 of each given info, selection and box
        file."""
        out: dict = {}
        if self.source != "sens":
            out["source"] = self.source
            out["embodiedscan_infos"] = [file_digest(p) for p in self.embodiedscan_infos]
        if self.source == "posed-rgbd":
            out["depth_scale"] = self.depth_scale
        if self.bev_images:
            out["bev_source"] = "released"
        if self.selection_file:
            out["selection_file"] = file_digest(self.selection_file)
        if self.boxes_file:
            out["boxes_file"] = file_digest(self.boxes_file)
        return out


def file_digest(path: str) -> str:
    """16 hex digits of the file's sha256 (cached per path, size and modification time)."""
    try:
        stat = Path(path).stat()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror}") from None
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _infos(paths: tuple[str, ...]) -> dict[str, EmbodiedScanScene]:
    return load_embodiedscan_infos(list(paths))


@functools.lru_cache(maxsize=4)
def released_selections(path: str):
    return load_selection_file(path)


@functools.lru_cache(maxsize=4)
def _boxes(path: str) -> dict[str, np.ndarray]:
    return load_box_file(path)


def embodiedscan_scene(sources: SourceOptions, scene_id: str) -> EmbodiedScanScene | None:
    """The scene's EmbodiedScan record, None without `--embodiedscan-infos`; an error when the pkls lack it."""
    if not sources.embodiedscan_infos:
        return None
    scene = _infos(tuple(sources.embodiedscan_infos)).get(scene_id)
    if scene is None:
        raise InputError(", ".join(sources.embodiedscan_infos), f"no 'scannet/{scene_id}' in the EmbodiedScan infos")
    return scene


@dataclass(frozen=True)
class FrameHeader:
    """What the job needs of a frame source's header (SensHeader has the same fields)."""

    intrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    color_size: tuple[int, int]
    depth_size: tuple[int, int]
    depth_shift: float
    num_frames: int


class PosedImagesSource:
    """Frames of `posed_images/<scene>/`: the frame list is the files present or the EmbodiedScan `images`; the
    depth intrinsics come from `depth_intrinsic.txt`, else the pkl's `depth_cam2img` (colour: `intrinsic.txt`,
    else `cam2img`). Sizes are those of the first listed frame; `num_frames` counts the listed frames."""

    def __init__(self, root: Path, es: EmbodiedScanScene | None):
        root = Path(root)
        self.path = root
        if not root.is_dir():
            raise InputError(root, "posed_images scene folder not found")
        k_depth = _intrinsic(root / "depth_intrinsic.txt", es.depth_cam2img if es else None)
        k_color = _intrinsic(root / "intrinsic.txt", es.cam2img if es else None)
        self.scene = PosedImagesScene(root, es.frame_indices if es else None, k_depth)
        if not self.scene.frame_indices:
            raise InputError(root, "no frames (no <idx>.jpg files and no EmbodiedScan images)")
        first = self.scene.frame_indices[0]
        depth = self.scene.read_depth(first)
        self.header = FrameHeader(k_color, k_depth, _jpeg_size(root / f"{first:05d}.jpg"),
                                  (depth.shape[1], depth.shape[0]), POSED_DEPTH_SHIFT, len(self.scene.frame_indices))

    def n_kept(self, stride: int) -> int:
        return sum(1 for i in self.scene.frame_indices if i % stride == 0)

    def frames(self, stride: int):
        """The scene's frames; a depth PNG whose size differs from the first frame's is an error naming it."""
        return _same_depth_size(self.scene.frames(stride), self.header.depth_size,
                                lambda index: self.path / f"{index:05d}.png")


class PosedRgbdSource:
    """Frames of a generic posed RGB-D scene folder (ross3d.scannet.posed_rgbd), depth in millimetres (depth
    shift 1000 whatever `--depth-scale`). Sizes are those of the first frame; without `intrinsic_color.txt` the
    colour images must have the depth size and take the depth intrinsics."""

    def __init__(self, root: Path, depth_scale: float):
        self.scene = PosedRgbdScene(root, depth_scale)
        self.path = self.scene.root
        if not self.scene.frame_indices:
            raise InputError(self.path / "color", "no frames (no <n>.jpg files)")
        first = self.scene.frame_indices[0]
        depth = self.scene.read_depth(first)
        depth_size = (depth.shape[1], depth.shape[0])
        color_size = _jpeg_size(self.scene.color_path(first))
        k_color = self.scene.intrinsic_color
        if k_color is None:
            if color_size != depth_size:
                raise InputError(self.path / "intrinsic_color.txt", f"missing, and the colour images "
                                 f"({color_size[0]}x{color_size[1]}) are not the depth size "
                                 f"({depth_size[0]}x{depth_size[1]})")
            k_color = self.scene.intrinsic_depth
        self.header = FrameHeader(k_color, self.scene.intrinsic_depth, color_size, depth_size, MM_PER_M,
                                  len(self.scene.frame_indices))

    def n_kept(self, stride: int) -> int:
        return sum(1 for i in self.scene.frame_indices if i % stride == 0)

    def frames(self, stride: int):
        return _same_depth_size(self.scene.frames(stride), self.header.depth_size, self.scene.depth_path)


def _same_depth_size(frames, depth_size: tuple[int, int], depth_path):
    """The frames, checked to have depth of `depth_size` (W, H); else an error naming `depth_path(index)`."""
    width, height = depth_size
    for frame in frames:
        if frame.depth.shape != (height, width):
            raise InputError(depth_path(frame.index),
                             f"depth is {frame.depth.shape[1]}x{frame.depth.shape[0]}, expected {width}x{height}")
        yield frame


class SensSource:
    """Frames of `<scene>.sens` (every stride-th of the stream)."""

    def __init__(self, reader, path: Path):
        self.reader, self.path, self.header = reader, path, reader.header

    def n_kept(self, stride: int) -> int:
        return (self.header.num_frames + stride - 1) // stride

    def frames(self, stride: int):
        return self.reader.frames(stride)


def _intrinsic(path: Path, fallback: np.ndarray | None) -> np.ndarray:
    if path.is_file() or fallback is None:
        return read_matrix_txt(path)
    return fallback


def _jpeg_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise InputError(path, "colour file missing for a listed frame") from None
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(path, f"not a readable JPEG ({err})") from None


@contextmanager
def open_frame_source(scans_dir: Path, scene_id: str, sources: SourceOptions):
    """The scene's frame source (a context manager: the `.sens` stream is closed at the end)."""
    if sources.source == "posed-images":
        yield PosedImagesSource(child_path(sources.posed_images, scene_id), embodiedscan_scene(sources, scene_id))
        return
    if sources.source == "posed-rgbd":
        yield PosedRgbdSource(child_path(sources.rgbd, scene_id), sources.depth_scale)
        return
    from ross3d.scannet.sens import SensReader

    path = scan_paths(scans_dir, scene_id).sens
    with SensReader(path) as reader:
        yield SensSource(reader, path)


@dataclass
class SceneObjects:
    """Objects in ascending id order: ids, labels, vertex counts and (K, 6) aligned boxes."""

    ids: list[int]
    labels: list[str]
    n_vertices: list[int]
    boxes: np.ndarray


@dataclass
class SceneInputs:
    """Everything of a scene besides its frames; `mesh` (aligned vertices) and `objects` may be None."""

    axis: np.ndarray
    aligned: bool
    mesh: SceneMesh | None
    objects: SceneObjects | None
    warnings: list[str] = field(default_factory=list)


def load_scene_inputs(scans_dir: Path, scene_id: str, sources: SourceOptions, fuse_mesh: bool = False
                      ) -> SceneInputs:
    """Axis alignment, aligned mesh and objects of the scene (module docstring for what is optional). With
    `fuse_mesh` a missing mesh is no error nor warning, whatever the source: the job fuses one from the frames."""
    from ross3d.scannet.scene import object_boxes, transform_points

    paths = scan_paths(scans_dir, scene_id)
    posed = sources.source != "sens"
    if not posed and not paths.root.is_dir():
        raise InputError(paths.root, "scene folder not found")
    es = embodiedscan_scene(sources, scene_id) if sources.source == "posed-images" else None
    if paths.meta.is_file() or not posed:
        axis, aligned = read_axis_alignment(paths.meta)
    elif es is not None and es.axis_align_matrix is not None:
        axis, aligned = es.axis_align_matrix, True
    else:
        log.warning("%s: no %s and no EmbodiedScan axis_align_matrix; using identity", scene_id, paths.meta.name)
        axis, aligned = np.eye(4), False
    warnings = []
    mesh = None
    if paths.mesh.is_file() or not (posed or fuse_mesh):
        raw = read_mesh(paths.mesh)
        mesh = SceneMesh(transform_points(axis, raw.vertices), raw.colors, raw.faces)
    objects = None
    if mesh is not None and (paths.aggregation.is_file() or not (posed or sources.boxes_file)):
        found = read_objects(paths.aggregation, paths.segs, n_vertices=len(mesh.vertices))
        objects = SceneObjects([o.object_id for o in found], [o.label for o in found],
                               [len(o.vertex_indices) for o in found], object_boxes(found, mesh.vertices))
    elif sources.boxes_file:
        boxes = _boxes(sources.boxes_file).get(scene_id)
        if boxes is None:
            raise InputError(sources.boxes_file, f"no 'scannet/{scene_id}' boxes")
        objects = SceneObjects(list(range(len(boxes))), [""] * len(boxes), [0] * len(boxes), boxes)
    if mesh is None and not fuse_mesh:
        missing = [] if sources.selection_file else ["max-coverage selection (give --selection-file)"]
        missing.append("BEV bounds" if sources.bev_images else "BEV (give --bev-images)")
        missing.append("voxel counts (new_voxels 0)")
        warnings.append(f"no mesh {paths.mesh}: missing {', '.join(missing)}")
    if objects is None:
        reason = f"no mesh for {paths.aggregation.name}" if paths.aggregation.is_file() else \
            f"no {paths.aggregation.name}"
        warnings.append(f"{reason} (and no --boxes-file): objects and membership are missing")
    return SceneInputs(axis, aligned, mesh, objects, warnings)
