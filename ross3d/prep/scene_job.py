"""The per-scene job: a scan (`.sens`, posed_images or posed RGB-D frames, see ross3d.prep.sources) ->
PREP_DIR/scenes/<scene_id>/ (frames.parquet, arrays.zarr, result.json) and previews/<scene_id>_bev.png. Coverage
voxels and the BEV come from the scan mesh, or with `--fuse-mesh` from a mesh fused from the kept frames during the
stream (ross3d.prep.fusion; the voxels then from the stored depth). Pure: writes only its own scene, through a temp
dir renamed at the end; any failure is returned in the SceneResult, never raised."""

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
from ross3d.prep.bev import Bev, render_bev, write_preview
from ross3d.prep.frames import read_depth, stream_kept_frames
from ross3d.prep.fusion import TsdfFusion
from ross3d.prep.input_fingerprint import input_fingerprint
from ross3d.prep.membership import membership
from ross3d.prep.options import PrepOptions
from ross3d.prep.sources import load_scene_inputs, open_frame_source, released_selections
from ross3d.prep.store import RESULT_FILE, commit_dir, temp_path, to_jsonable, write_json_atomic
from ross3d.safe_names import child_path
from ross3d.scannet.posed_images import load_released_bev

log = logging.getLogger(__name__)
STAGES = ("inputs", "sens_read", "fusion", "voxels", "selection", "geometry", "objects", "bev", "write")
VOXEL_BATCH = 4  # full depth frames unprojected at once for coverage (4 x 3.5 MiB of points at 640x480)
CROP_BATCH = 8  # selected frames mapped to the crop at once (8 x 1.7 MiB of points)


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
    bev_source: str = ""  # "rendered" (the scan mesh), "fused" (the fused mesh), "released" or "none"
    mesh_source: str = ""  # "scan", "fused" (--fuse-mesh) or "none"
    warnings: list[str] = field(default_factory=list)  # outputs missing for want of an input
    selection_agreement: dict | None = None  # --selection-file vs our max-coverage
    inputs_fingerprint: str = ""  # ross3d.prep.input_fingerprint of the scene's files when its job started

    def to_record(self) -> dict:
        return to_jsonable(self.__dict__)

    @classmethod
    def from_record(cls, record: dict) -> "SceneResult":
        return cls(**record)


class _Timer:
    """Seconds per stage; time in a stage entered inside another counts for the inner stage only."""

    def __init__(self) -> None:
        self.seconds = {stage: 0.0 for stage in STAGES}
        self._open: list[list] = []  # [stage, start of its current stretch], innermost last

    @contextmanager
    def stage(self, name: str):
        now = time.perf_counter()
        if self._open:
            outer = self._open[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._open.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self.seconds[name] += now - self._open.pop()[1]
            if self._open:
                self._open[-1][1] = now


def _zarr_codec():
    from zarr.codecs import ZstdCodec

    return ZstdCodec(level=3)


def _frame_voxels(mesh_voxels, depth, raw_poses, axis, hdr, exclude_zero_depth) -> list[np.ndarray]:
    """Coverage voxel ids of each frame of depth (F, H, W) under its raw pose (F, 4, 4)."""
    poses = np.stack([axis @ p.astype(np.float64) for p in raw_poses])
    world = geometry.unproject(depth, hdr.intrinsic_depth.astype(np.float64), poses, hdr.depth_shift)
    return mesh_voxels.frame_ids(world, geometry.depth_validity(depth, exclude_zero_depth))


def _stream(source, store, tmp, axis, mesh_voxels, fusion, options, timer):
    """Read the frame source once: depth into the zarr, rows into frames.parquet ("sens_read"), the coverage
    voxel ids of each valid frame as its group of frames arrives ("voxels"; None without a mesh), and each valid
    frame into the TSDF `fusion` when given ("fusion")."""
    voxel_sets: dict[int, np.ndarray] | None = None if mesh_voxels is None else {}
    hdr = source.header

    def visit(positions, frames):
        if fusion is not None:
            with timer.stage("fusion"):
                for f in frames:
                    try:
                        fusion.integrate(f.depth, f.color_jpeg, axis @ f.pose.astype(np.float64))
                    except ValueError as err:
                        raise InputError(source.path, f"frame {f.index}: {err}") from None
        if voxel_sets is None:
            return
        with timer.stage("voxels"):
            for start in range(0, len(frames), VOXEL_BATCH):
                batch = frames[start:start + VOXEL_BATCH]
                ids = _frame_voxels(mesh_voxels, np.stack([f.depth for f in batch]), [f.pose for f in batch], axis,
                                    hdr, options.exclude_zero_depth)
                voxel_sets.update(zip(positions[start:start + VOXEL_BATCH], ids))

    with timer.stage("sens_read"):
        dw, dh = hdr.depth_size
        depth = store.create_array("depth", shape=(source.n_kept(options.frame_stride), dh, dw), dtype="uint16",
                                   chunks=(1, dh, dw), compressors=_zarr_codec())
        kept = stream_kept_frames(source, options.frame_stride, depth, tmp / "frames.parquet", visit)
    return depth, kept, voxel_sets


def _stored_voxel_sets(depth, kept, axis, mesh_voxels, hdr, exclude_zero_depth) -> dict[int, np.ndarray]:
    """Coverage voxel ids of each valid kept frame, its depth read back from the zarr (a fused mesh exists only
    after the stream)."""
    positions = np.flatnonzero(kept.valid)
    out = {}
    for start in range(0, len(positions), VOXEL_BATCH):
        batch = positions[start:start + VOXEL_BATCH]
        ids = _frame_voxels(mesh_voxels, read_depth(depth, batch), kept.poses[batch], axis, hdr,
                            exclude_zero_depth)
        out.update(zip(batch.tolist(), ids))
    return out


def _covered(voxel_sets, positions) -> int:
    return int(len(np.unique(np.concatenate([voxel_sets[int(k)] for k in positions])))) if len(positions) else 0


def _released_max_coverage(scene_id, kept, voxel_sets, n_voxels, options):
    """The original's selection (--selection-file) as its consumer takes it, as kept positions and gains (ours
    in rank order with a mesh, else the file's), padded to num_frames by repeating from rank 0 with gain 0."""
    path = options.sources.selection_file
    record = released_selections(path).get(scene_id)
    if record is None:
        raise InputError(path, f"no record for {scene_id}")
    frames, file_gains = record.consumer_frames(options.num_frames)
    where = {int(f): k for k, f in enumerate(kept.frame_idx)}
    for f in frames:
        if f not in where or not kept.valid[where[f]]:
            raise InputError(path, f"{scene_id}: frame {f} is not a valid kept frame")
    positions = np.asarray([where[f] for f in frames], np.int64)
    gains = (selection.gains_in_order(voxel_sets, positions, n_voxels) if voxel_sets is not None
             else np.asarray(file_gains, np.int64))
    padded = selection.pad_by_repeating(positions, gains, options.num_frames)
    return padded.picks, padded.gains


def _select(scene_id, kept, voxel_sets, n_voxels, options, source_path):
    """Kept-frame positions per strategy and their gains, and how far the selection file agrees with ours."""
    candidates = np.flatnonzero(kept.valid)
    if len(candidates) == 0:
        raise InputError(source_path, "no valid frame (every kept pose is non-finite)")
    chosen, agreement = {}, None
    if voxel_sets is None:
        picks = candidates[selection.uniform_picks(len(candidates), options.num_frames)]
        chosen["uniform"] = (picks, np.zeros(len(picks), np.int64))
    else:
        sets = [voxel_sets[int(k)] for k in candidates]
        greedy = selection.max_coverage(sets, n_voxels, options.num_frames, options.seed)
        if options.max_coverage_order == "frame":  # candidates are in frame order
            greedy = selection.in_frame_order(greedy, sets, n_voxels, options.num_frames)
        for name, sel in (("uniform", selection.uniform(sets, n_voxels, options.num_frames)),
                          ("max-coverage", greedy)):
            chosen[name] = (candidates[sel.picks], sel.gains)
    if options.sources.selection_file:
        theirs = _released_max_coverage(scene_id, kept, voxel_sets, n_voxels, options)
        if "max-coverage" in chosen:
            ours = chosen["max-coverage"][0]
            agreement = {"shared_frames": len(set(ours.tolist()) & set(theirs[0].tolist())),
                         "num_frames": len(set(theirs[0].tolist())), "covered_voxels_ours": _covered(voxel_sets, ours),
                         "covered_voxels_theirs": _covered(voxel_sets, theirs[0]), "mesh_voxels": n_voxels}
        chosen["max-coverage"] = theirs
    return chosen, agreement


def _frame_arrays(distinct, depth, kept, hdr, axis, objects, exclude_zero_depth, timer):
    """Per-token mean coordinates (V, 14, 14, 3) ("geometry") and object membership (n_obj, V, 27, 27) or None
    ("objects") of the distinct kept positions, CROP_BATCH frames at a time."""
    k_depth = hdr.intrinsic_depth.astype(np.float64)
    coords, member = [], []
    for start in range(0, len(distinct), CROP_BATCH):
        with timer.stage("geometry"):
            batch = distinct[start:start + CROP_BATCH]
            poses = np.stack([axis @ kept.poses[k].astype(np.float64) for k in batch])
            pts, ok = geometry.frame_crop_points(read_depth(depth, batch), k_depth, poses,
                                                 hdr.depth_shift, exclude_zero_depth)
            coords.append(geometry.cell_means(pts, ok, geometry.TOKEN_GRID, poses[:, :3, 3]))
        if objects is not None:
            with timer.stage("objects"):
                member.append(membership(pts, ok, objects.boxes))
    return np.concatenate(coords), (np.concatenate(member, axis=1) if objects is not None else None)


def _bev(scene_id: str, inputs, mesh_source: str, hdr, options: PrepOptions) -> tuple[Bev | None, str]:
    """The released view_0.jpg (--bev-images; bounds unknown: NaN), else the render of the scan mesh ("rendered")
    or of the fused one ("fused"), else none."""
    if options.sources.bev_images:
        rgb, valid = load_released_bev(child_path(options.sources.bev_images, scene_id) / "view_0.jpg",
                                       hdr.depth_size, options.bev_size)
        return Bev(rgb, valid, np.full(4, np.nan, np.float32)), "released"
    if inputs.mesh is None:
        return None, "none"
    mesh = inputs.mesh
    bev = render_bev(mesh.vertices, mesh.colors, mesh.faces, options.bev_size)
    return bev, "fused" if mesh_source == "fused" else "rendered"


def _arrays(selected, distinct, coords, member) -> dict[str, np.ndarray]:
    """coords, voxels and membership of each strategy, from those of the distinct positions."""
    arrays = {}
    for name, (positions, _) in selected.items():
        at = np.searchsorted(distinct, positions)
        arrays[f"coords/{name}"] = coords[at]
        arrays[f"voxels/{name}"] = geometry.discrete_voxels(coords[at])
        if member is not None:
            arrays[f"membership/{name}"] = member[:, at]
    return arrays


def _run(scans_dir: Path, scene_id: str, tmp: Path, options: PrepOptions, timer: _Timer) -> SceneResult:
    with timer.stage("inputs"):
        inputs = load_scene_inputs(scans_dir, scene_id, options.sources, options.fuse_mesh)
    for warning in inputs.warnings:
        log.warning("%s: %s", scene_id, warning)
    with timer.stage("voxels"):
        mesh_voxels = None if inputs.mesh is None else geometry.MeshVoxels(inputs.mesh.vertices)
    mesh_source = "scan" if inputs.mesh is not None else "fused" if options.fuse_mesh else "none"
    with timer.stage("sens_read"):  # the stream stage is the first to write arrays (zarr's import included)
        import zarr

        tmp.mkdir(parents=True)
        store = zarr.open_group(tmp / "arrays.zarr", mode="w")
    with open_frame_source(scans_dir, scene_id, options.sources) as source:
        hdr, source_path = source.header, source.path
        fusion = None if mesh_source != "fused" else TsdfFusion(
            hdr.intrinsic_depth, hdr.intrinsic_color, hdr.depth_shift, options.fuse_voxel_size, options.fuse_trunc)
        depth, kept, voxel_sets = _stream(source, store, tmp, inputs.axis, mesh_voxels, fusion, options, timer)
    if fusion is not None:
        with timer.stage("fusion"):
            inputs.mesh = fusion.mesh(source_path)
        with timer.stage("voxels"):
            mesh_voxels = geometry.MeshVoxels(inputs.mesh.vertices)
            voxel_sets = _stored_voxel_sets(depth, kept, inputs.axis, mesh_voxels, hdr, options.exclude_zero_depth)
    n_voxels = 0 if mesh_voxels is None else mesh_voxels.count
    with timer.stage("selection"):
        selected, agreement = _select(scene_id, kept, voxel_sets, n_voxels, options, source_path)
    distinct = np.unique(np.concatenate([p for p, _ in selected.values()]))
    coords, member = _frame_arrays(distinct, depth, kept, hdr, inputs.axis, inputs.objects,
                                   options.exclude_zero_depth, timer)
    with timer.stage("geometry"):
        arrays = _arrays(selected, distinct, coords, member)
    with timer.stage("bev"):
        bev, bev_source = _bev(scene_id, inputs, mesh_source, hdr, options)
        if bev is not None:
            arrays.update({"bev/rgb": bev.rgb, "bev/valid": bev.valid, "bev/bounds": bev.bounds})
    with timer.stage("write"):
        for key, value in arrays.items():
            compress = value.dtype != np.float32
            store.create_array(key, data=value, chunks=value.shape,
                               compressors=_zarr_codec() if compress else None)
        if bev is not None:
            write_preview(bev, tmp / "bev.png")
    objects = inputs.objects
    return SceneResult(
        scene_id=scene_id, status="ok", fingerprint=options.fingerprint(), n_frames_total=hdr.num_frames,
        scene_row=_scene_row(scene_id, hdr, kept, inputs.axis, inputs.aligned),
        selection_rows=[{"scene_id": scene_id, "strategy": name, "rank": r, "frame_idx": int(kept.frame_idx[k]),
                         "new_voxels": int(g)} for name, (pos, gains) in selected.items()
                        for r, (k, g) in enumerate(zip(pos, gains))],
        object_rows=[] if objects is None else [
            {"scene_id": scene_id, "object_id": i, "label": label, "box": box.tolist(), "n_vertices": n}
            for i, label, n, box in zip(objects.ids, objects.labels, objects.n_vertices, objects.boxes)],
        bev_source=bev_source, mesh_source=mesh_source, warnings=inputs.warnings, selection_agreement=agreement,
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
    tmp = None
    timer = _Timer()
    inputs = ""
    try:
        final = child_path(prep_dir / "scenes", scene_id)
        tmp = temp_path(final)
        inputs = input_fingerprint(Path(scans_dir), scene_id, options.sources)
        result = _run(Path(scans_dir), scene_id, tmp, options, timer)
        start = time.perf_counter()
        result.timings, result.inputs_fingerprint = timer.seconds, inputs
        write_json_atomic(tmp / RESULT_FILE, result.to_record())
        commit_dir(tmp, final)
        preview = child_path(prep_dir / "previews", f"{scene_id}_bev.png")
        preview.parent.mkdir(exist_ok=True)
        if (final / "bev.png").is_file():
            preview_tmp = temp_path(preview)
            shutil.copyfile(final / "bev.png", preview_tmp)
            os.replace(preview_tmp, preview)
        else:
            preview.unlink(missing_ok=True)
        result.timings["write"] += time.perf_counter() - start
        return result
    except Exception as err:  # noqa: BLE001 - one bad scene must not stop the others
        message = str(err) if isinstance(err, Ross3DError) else f"{type(err).__name__}: {err}"
        log.warning("%s failed: %s", scene_id, message)
        return SceneResult(scene_id, "failed", message, options.fingerprint(), failed_row(scene_id, message),
                           timings=timer.seconds, inputs_fingerprint=inputs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
