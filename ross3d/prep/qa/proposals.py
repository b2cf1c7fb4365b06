"""Object proposals for evaluation: import the original's predicted-box JSON (`{"scannet/<scene>": [[cx,cy,cz,
dx,dy,dz], ...]}`) or Mask3D-style per-scene sparse masks (`<scene>.mask.npz`, proposals x mesh vertices: the
first 50 rows, each the AABB of its aligned vertices), write/read PREP_DIR/proposals.parquet, and the
IoU >= 0.5 matching that gives Scan2Cap val its box_input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ross3d.errors import ConfigError, InputError
from ross3d.boxes import aabb_iou
from ross3d.prep.qa.native import load_json
from ross3d.prep.qa.schema import read_checked_table
from ross3d.safe_names import check_scene_id
from ross3d.scannet.posed_images import load_box_file

log = logging.getLogger(__name__)

MAX_PROPOSALS = 50
MATCH_IOU = 0.5
MASK_SUFFIX = ".mask.npz"
PROPOSALS_SCHEMA = pa.schema([
    pa.field("scene_id", pa.string(), nullable=False),
    pa.field("proposal_id", pa.int32(), nullable=False),
    pa.field("box", pa.list_(pa.float32(), 6), nullable=False),
])


def mask_boxes(masks, aligned_vertices: np.ndarray, source: str | Path) -> np.ndarray:
    """AABBs of the first 50 mask rows over the vertices whose mask value is exactly 1 (the original's
    `mask == 1`). An empty row ends the list there, as the original's per-scene exception handling truncated it
    (logged)."""
    masks = masks.tocsr()[:MAX_PROPOSALS]
    if masks.shape[1] != len(aligned_vertices):
        raise InputError(source, f"mask has {masks.shape[1]} columns but the mesh has {len(aligned_vertices)} "
                                 "vertices")
    boxes = []
    for row in range(masks.shape[0]):
        span = slice(masks.indptr[row], masks.indptr[row + 1])
        vertex_ids = masks.indices[span][masks.data[span] == 1]
        if len(vertex_ids) == 0:
            log.warning("%s: proposal %d is empty; keeping the %d proposals before it", source, row, row)
            break
        pts = aligned_vertices[vertex_ids]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]))
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 6)


def read_mask_proposals(mask_dir: str | Path, scans_dir: str | Path) -> dict[str, np.ndarray]:
    """scene_id -> boxes for every `<scene>.mask.npz` in mask_dir, with meshes and alignment from scans_dir."""
    import scipy.sparse

    from ross3d.scannet.scene import read_axis_alignment, read_mesh, scan_paths, transform_points

    out = {}
    for path in sorted(Path(mask_dir).glob(f"*{MASK_SUFFIX}")):
        scene_id = check_scene_id(path.name[: -len(MASK_SUFFIX)], path)
        try:
            masks = scipy.sparse.load_npz(path)
        except (OSError, ValueError) as err:
            raise InputError(path, f"not a scipy sparse .npz ({err})") from None
        paths = scan_paths(scans_dir, scene_id)
        matrix, _ = read_axis_alignment(paths.meta)
        out[scene_id] = mask_boxes(masks, transform_points(matrix, read_mesh(paths.mesh).vertices), path)
    if not out:
        raise InputError(mask_dir, f"no *{MASK_SUFFIX} files")
    return out


def scans_dir_from_manifest(prep_dir: str | Path) -> Path:
    """The scans folder `prep scannet` recorded in PREP_DIR/manifest.json (`scans_dir`, top level or in
    `options`)."""
    path = Path(prep_dir) / "manifest.json"
    manifest = load_json(path) if path.is_file() else {}
    options = manifest.get("options", {}) if isinstance(manifest, dict) else {}
    value = (manifest.get("scans_dir") if isinstance(manifest, dict) else None) or \
        (options.get("scans_dir") if isinstance(options, dict) else None)
    if not value:
        raise ConfigError(f"--scans: mask proposals need the ScanNet scans folder and {path} records none")
    return Path(value)


def load_proposals(source: str | Path, prep_dir: str | Path, scans_dir: str | Path | None = None
                   ) -> dict[str, np.ndarray]:
    """A proposals JSON file, or a folder of Mask3D-style masks."""
    source = Path(source)
    if source.is_dir():
        return read_mask_proposals(source, scans_dir or scans_dir_from_manifest(prep_dir))
    if not source.is_file():
        raise InputError(source, "proposals file or folder not found")
    return load_box_file(source)


def write_proposals(path: str | Path, proposals: dict[str, np.ndarray]) -> int:
    """PREP_DIR/proposals.parquet: one row per (scene_id, proposal_id = index in the scene's list)."""
    path = Path(path)
    scene_ids, ids, boxes = [], [], []
    for scene_id in sorted(proposals):
        for k, box in enumerate(proposals[scene_id]):
            scene_ids.append(scene_id)
            ids.append(k)
            boxes.append([float(v) for v in box])
    table = pa.Table.from_pydict({"scene_id": scene_ids, "proposal_id": ids, "box": boxes}, schema=PROPOSALS_SCHEMA)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows


def read_proposals(path: str | Path) -> dict[str, np.ndarray]:
    """scene_id -> (N, 6) float32 boxes ordered by proposal_id, from proposals.parquet."""
    table = read_checked_table(path, PROPOSALS_SCHEMA, "run `ross3d prep qa --proposals ...`")
    out: dict[str, list] = {}
    for sid, pid, box in sorted(zip(*(table.column(c).to_pylist() for c in ("scene_id", "proposal_id", "box")))):
        out.setdefault(sid, []).append(box)
    return {sid: np.asarray(b, dtype=np.float32).reshape(-1, 6) for sid, b in out.items()}


def match_proposal(gt_box: np.ndarray, boxes: np.ndarray | None) -> np.ndarray | None:
    """The proposal among the first 50 with the highest IoU to gt_box if that IoU >= 0.5 (first on ties)."""
    if boxes is None or len(boxes) == 0:
        return None
    ious = aabb_iou(gt_box, boxes[:MAX_PROPOSALS])
    best = int(np.argmax(ious))
    return boxes[best] if ious[best] >= MATCH_IOU else None
