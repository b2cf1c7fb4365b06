"""The per-scene job: raw scan -> PREP_DIR/scenes/<scene_id>/ (frames.parquet, arrays.zarr, result.json) and
previews/<scene_id>_bev.png. Pure: writes only its own scene, through a temp dir renamed at the end; any failure
is returned in the SceneResult, never raised."""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ross3d.errors import InputError, Ross3DError
from ross3d.prep import geometry, selection
from ross3d.prep.bev import render_bev, write_preview
from ross3d.prep.frames import stream_kept_frames, n_kept
from ross3d.prep.membership import membership
from ross3d.prep.options import STRATEGIES, PrepOptions
from ross3d.prep.store import RESULT_FILE, commit_dir, temp_path, to_jsonable, write_json_atomic
from ross3d.scannet.scene import object_boxes, read_axis_alignment, read_mesh, read_objects, scan_paths, \
    transform_points
from ross3d.scannet.sens import SensReader

log = logging.getLogger(__name__)
STAGES = ("sens_read", "selection", "geometry", "objects", "bev", "write")


@dataclass
class SceneResult:
    """Outcome of one scene; rows follow the schemas in ross3d.prep.store."""

    scene_id: str
    status: str  # "ok" or "failed"
    error: str | None = None
    fingerprint: str = ""
    scene_row: dict = field(default_factory=dict)
    selection_rows: list[dict] = field(default_factory=list)
    object_rows: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    n_frames_total: int = 0

    def to_record(self) -> dict:
        return to_jsonable(self.__dict__)

    @classmethod
    def from_record(cls, record: dict) -> "SceneResult":
        return cls(**record)


class _Timer:
    def __init__(self) -> None:
        self.seconds = {stage: 0.0 for stage in STAGES}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def _zarr_codec():
    from zarr.codecs import ZstdCodec

    return ZstdCodec(level=3)


def _stream(paths, store, tmp, axis, mesh_voxels, stride, timer):
    """Read the .sens once: depth into the zarr, rows into frames.parquet, coverage voxel ids per valid frame."""
    voxel_sets: dict[int, np.ndarray] = {}
    with timer.stage("sens_read"), SensReader(paths.sens) as reader:
        hdr = reader.header
        dw, dh = hdr.depth_size
        depth = store.create_array("depth", shape=(n_kept(hdr.num_frames, stride), dh, dw), dtype="uint16",
                                   chunks=(1, dh, dw), compressors=_zarr_codec())
        k_depth = hdr.intrinsic_depth.astype(np.float64)

        def visit(k, frame):
            start = time.perf_counter()
            world = geometry.unproject(frame.depth, k_depth, axis @ frame.pose.astype(np.float64), hdr.depth_shift)
            voxel_sets[k] = mesh_voxels.ids(world[frame.depth > 0])
            timer.seconds["selection"] += time.perf_counter() - start
            timer.seconds["sens_read"] -= time.perf_counter() - start

        kept = stream_kept_frames(reader, stride, depth, tmp / "frames.parquet", visit)
    return hdr, depth, kept, voxel_sets


def _select(kept, voxel_sets, n_voxels, options, sens_path):
    """Kept-frame positions per strategy and their gains."""
    candidates = np.flatnonzero(kept.valid)
    if len(candidates) == 0:
        raise InputError(sens_path, "no valid frame (every kept pose is non-finite)")
    sets = [voxel_sets[int(k)] for k in candidates]
    chosen = {
        "uniform": selection.uniform(sets, n_voxels, options.num_frames),
        "max-coverage": selection.max_coverage(sets, n_voxels, options.num_frames, options.seed),
    }
    return {name: (candidates[sel.picks], sel.gains) for name, sel in chosen.items()}


def _frame_geometry(positions, depth, kept, hdr, axis):
    """Crop points, validity and camera centres of the distinct kept positions."""
    out = {}
    k_depth = hdr.intrinsic_depth.astype(np.float64)
    for k in np.unique(positions):
        pose = axis @ kept.poses[k].astype(np.float64)
        pts, ok = geometry.frame_crop_points(depth[int(k)], k_depth, pose, hdr.depth_shift)
        out[int(k)] = (pts, ok, pose[:3, 3])
    return out


def _run(scans_dir: Path, scene_id: str, tmp: Path, options: PrepOptions, timer: _Timer) -> SceneResult:
    import zarr

    paths = scan_paths(scans_dir, scene_id)
    if not paths.root.is_dir():
        raise InputError(paths.root, "scene folder not found")
    with timer.stage("objects"):
        axis, aligned = read_axis_alignment(paths.meta)
        mesh = read_mesh(paths.mesh)
        vertices = transform_points(axis, mesh.vertices)
        objects = read_objects(paths.aggregation, paths.segs)
        boxes = object_boxes(objects, vertices)
    with timer.stage("selection"):
        mesh_voxels = geometry.MeshVoxels(vertices)
    tmp.mkdir(parents=True)
    store = zarr.open_group(tmp / "arrays.zarr", mode="w")
    hdr, depth, kept, voxel_sets = _stream(paths, store, tmp, axis, mesh_voxels, options.frame_stride, timer)
    with timer.stage("selection"):
        selected = _select(kept, voxel_sets, mesh_voxels.count, options, paths.sens)
    with timer.stage("geometry"):
        distinct = np.unique(np.concatenate([p for p, _ in selected.values()]))
        geo = _frame_geometry(distinct, depth, kept, hdr, axis)
    with timer.stage("objects"):
        member = membership(np.stack([geo[int(k)][0] for k in distinct]),
                            np.stack([geo[int(k)][1] for k in distinct]), boxes)
    arrays = {}
    for name in STRATEGIES:
        positions = selected[name][0]
        with timer.stage("geometry"):
            coords = np.stack([geometry.cell_means(geo[int(k)][0], geo[int(k)][1], geometry.TOKEN_GRID,
                                                   geo[int(k)][2]) for k in positions])
            arrays[f"coords/{name}"] = coords
            arrays[f"voxels/{name}"] = geometry.discrete_voxels(coords)
        arrays[f"membership/{name}"] = member[:, np.searchsorted(distinct, positions)]
    with timer.stage("bev"):
        bev = render_bev(vertices, mesh.colors, mesh.faces, options.bev_size)
        arrays.update({"bev/rgb": bev.rgb, "bev/valid": bev.valid, "bev/bounds": bev.bounds})
    with timer.stage("write"):
        for key, value in arrays.items():
            compress = value.dtype != np.float32
            store.create_array(key, data=value, chunks=value.shape,
                               compressors=_zarr_codec() if compress else None)
        write_preview(bev, tmp / "bev.png")
    return SceneResult(
        scene_id=scene_id, status="ok", fingerprint=options.fingerprint(), n_frames_total=hdr.num_frames,
        scene_row=_scene_row(scene_id, hdr, kept, axis, aligned),
        selection_rows=[{"scene_id": scene_id, "strategy": name, "rank": r, "frame_idx": int(kept.frame_idx[k]),
                         "new_voxels": int(g)} for name, (pos, gains) in selected.items()
                        for r, (k, g) in enumerate(zip(pos, gains))],
        object_rows=[{"scene_id": scene_id, "object_id": o.object_id, "label": o.label, "box": boxes[i].tolist(),
                      "n_vertices": len(o.vertex_indices)} for i, o in enumerate(objects)],
    )


def _scene_row(scene_id, hdr, kept, axis, aligned) -> dict:
    return {
        "scene_id": scene_id, "n_frames_total": hdr.num_frames, "n_frames_kept": len(kept.frame_idx),
        "n_frames_invalid": int((~kept.valid).sum()), "axis_align": axis.reshape(16).tolist(), "aligned": aligned,
        "color_width": hdr.color_size[0], "color_height": hdr.color_size[1], "depth_width": hdr.depth_size[0],
        "depth_height": hdr.depth_size[1], "intrinsic_color": hdr.intrinsic_color.reshape(16).tolist(),
        "intrinsic_depth": hdr.intrinsic_depth.reshape(16).tolist(), "status": "ok", "error": None,
    }


def failed_row(scene_id: str, error: str) -> dict:
    return {"scene_id": scene_id, "status": "failed", "error": error}


def process_scene(scans_dir: str | Path, scene_id: str, prep_dir: str | Path, options: PrepOptions) -> SceneResult:
    """Process one scene into PREP_DIR (committed atomically); failures come back as status "failed"."""
    prep_dir = Path(prep_dir)
    final = prep_dir / "scenes" / scene_id
    tmp = temp_path(final)
    timer = _Timer()
    try:
        result = _run(Path(scans_dir), scene_id, tmp, options, timer)
        start = time.perf_counter()
        result.timings = timer.seconds
        write_json_atomic(tmp / RESULT_FILE, result.to_record())
        commit_dir(tmp, final)
        preview = prep_dir / "previews" / f"{scene_id}_bev.png"
        preview.parent.mkdir(exist_ok=True)
        preview_tmp = temp_path(preview)
        shutil.copyfile(final / "bev.png", preview_tmp)
        os.replace(preview_tmp, preview)
        result.timings["write"] += time.perf_counter() - start
        return result
    except Exception as err:  # noqa: BLE001 - one bad scene must not stop the others
        message = str(err) if isinstance(err, Ross3DError) else f"{type(err).__name__}: {err}"
        log.warning("%s failed: %s", scene_id, message)
        return SceneResult(scene_id, "failed", message, options.fingerprint(), failed_row(scene_id, message),
                           timings=timer.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
