"""Export ScanNet-layout scans (synthetic or real) as the data Ross3D / Video-3D-LLM users already have, so the
`ross3d prep scannet --source posed-images` path is testable without the real downloads:

- `OUT/posed_images/<scene>/`: every stride-th frame of the `.sens` as the original export writes it
  (docs/original-data.md B.3): `<idx5>.jpg` colour **re-encoded** (PIL, quality 75 as imageio's default),
  `<idx5>.png` 16-bit depth in mm, `<idx5>.txt` the raw camera-to-world pose as 4 lines of `%f` values (`-inf`
  for invalid poses), `intrinsic.txt` and `depth_intrinsic.txt`;
- `OUT/embodiedscan/embodiedscan_infos.pkl`: `{"metainfo": ..., "data_list": [...]}` with one item per scene
  (`sample_idx` "scannet/<scene>", `axis_align_matrix`, `cam2img`, `depth_cam2img`, `images` with `img_path`,
  `depth_path`, `cam2global` (raw pose) for every exported frame);
- `OUT/bev/<scene>/view_0.jpg`: BEV images in the released style. Our rendered square S x S BEV (ross3d.prep.bev)
  is centred on a black canvas with the depth frame's aspect (int(W_d * S / H_d) x S, 576 x 432 for ScanNet) and
  saved as JPEG (quality 95, no chroma subsampling): the original loader's resize to that same size is then the
  identity and its centre crop recovers the square (up to JPEG loss), so released-style BEVs keep the contract's
  pixel convention;
- `OUT/metadata/scannet_select_frames.json`: the original's max-coverage output (B.7 format) computed with our
  voxels and greedy rule over the original's candidates (every other exported valid frame, all of them when fewer
  than 32 remain), at most 32 picks;
- `OUT/metadata/scannet_{split}_gt_box.json` (object AABBs, list index = objectId; a scene whose ids are not
  0..K-1 or that has an object without vertices is dropped, as the original) and `scannet_{split}_pred_box.json`
  (the same boxes with centres moved by seeded 5 cm noise: synthetic proposals), B.6 format.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from ross3d.progress import NullProgress, Progress

JPEG_QUALITY = 75
BEV_JPEG_QUALITY = 95
MAX_PICKS = 32


def write_matrix_txt(path: Path, matrix: np.ndarray) -> None:
    """4 lines of `%f` values separated by single spaces (the original's save_mat_to_file)."""
    path.write_text("\n".join(" ".join("%f" % v for v in row) for row in np.asarray(matrix, np.float64)) + "\n")


def released_style_bev(rgb: np.ndarray, depth_size: tuple[int, int]) -> bytes:
    """The square BEV centred on a black canvas of the depth frame's aspect, as JPEG bytes."""
    from PIL import Image

    size = rgb.shape[0]
    width = int(depth_size[0] * size / depth_size[1])
    canvas = np.zeros((size, width, 3), np.uint8)
    left = (width - size) // 2
    canvas[:, left:left + size] = rgb
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=BEV_JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _reencode(jpeg: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _export_frames(sens_path: Path, scene_dir: Path, stride: int, axis: np.ndarray, mesh_voxels, scene_id: str):
    """Write the frame files; returns the header, the pkl image records and per valid frame its voxel ids."""
    import cv2

    from ross3d.prep import geometry
    from ross3d.scannet.sens import SensReader

    images, voxels = [], {}
    with SensReader(sens_path) as reader:
        hdr = reader.header
        write_matrix_txt(scene_dir / "intrinsic.txt", hdr.intrinsic_color)
        write_matrix_txt(scene_dir / "depth_intrinsic.txt", hdr.intrinsic_depth)
        for frame in reader.frames(stride):
            stem = f"{frame.index:05d}"
            (scene_dir / f"{stem}.jpg").write_bytes(_reencode(frame.color_jpeg))
            cv2.imwrite(str(scene_dir / f"{stem}.png"), frame.depth)
            write_matrix_txt(scene_dir / f"{stem}.txt", frame.pose)
            prefix = f"scannet/posed_images/{scene_id}/{stem}"
            images.append({"img_path": f"{prefix}.jpg", "depth_path": f"{prefix}.png",
                           "cam2global": frame.pose.astype(np.float64)})
            if frame.valid:
                world = geometry.unproject(frame.depth, hdr.intrinsic_depth.astype(np.float64),
                                           axis @ frame.pose.astype(np.float64), hdr.depth_shift)
                voxels[frame.index] = mesh_voxels.ids(world.reshape(-1, 3))  # zero depth included, as the original
    return hdr, images, voxels


def _selection_record(scene_id: str, voxels: dict[int, np.ndarray], n_voxels: int, seed: int) -> dict:
    """The original's max-coverage record of one scene (B.7), candidates as the original takes them."""
    from ross3d.prep.selection import max_coverage

    frames = sorted(voxels)
    candidates = frames[::2] if len(frames[::2]) >= MAX_PICKS else frames
    sets = [voxels[f] for f in candidates]
    sel = max_coverage(sets, n_voxels, min(MAX_PICKS, len(candidates)), seed)
    picked = [candidates[p] for p in sel.picks]
    union = lambda fs: len(np.unique(np.concatenate([voxels[f] for f in fs]))) if fs else 0  # noqa: E731
    return {"video_id": f"scannet/{scene_id}",
            "frame_files": [f"data/scannet/posed_images/{scene_id}/{f:05d}.jpg" for f in picked],
            "voxel_nums": [int(g) for g in sel.gains], "num_all_voxels": union(candidates),
            "num_select_voxels": union(picked)}


def _gt_boxes(scans_dir: Path, scene_id: str, vertices: np.ndarray) -> list[list[float]] | None:
    """AABBs indexed by objectId, or None when the ids are not 0..K-1 or an object has no vertices."""
    from ross3d.scannet.scene import object_boxes, read_objects, scan_paths

    paths = scan_paths(scans_dir, scene_id)
    if not paths.aggregation.is_file():
        return None
    objects = read_objects(paths.aggregation, paths.segs, n_vertices=len(vertices))
    if [o.object_id for o in objects] != list(range(len(objects))) or any(
            len(o.vertex_indices) == 0 for o in objects):
        return None
    return object_boxes(objects, vertices).astype(np.float64).round(6).tolist()


def scannet_splits(metadata_dir: str | Path) -> dict[str, list[str]] | None:
    """{split: scene ids} from `scannetv2_{train,val,test}.txt` in `metadata_dir` (None when there are none)."""
    splits = {}
    for split in ("train", "val", "test"):
        path = Path(metadata_dir) / f"scannetv2_{split}.txt"
        if path.is_file():
            splits[split] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return splits or None


def export_posed_images(scans_dir: str | Path, out_dir: str | Path, scenes: list[str] | None = None, *,
                        stride: int = 10, bev_size: int = 432, seed: int = 0,
                        splits: dict[str, list[str]] | None = None, progress: Progress = NullProgress()
                        ) -> list[str]:
    """Write the layouts of the module docstring for `scenes` (default: every scene folder of SCANS_DIR);
    `splits` names the box files (default: every scene in "train"). Returns the exported scene ids."""
    from ross3d.prep.bev import render_bev
    from ross3d.prep.geometry import MeshVoxels
    from ross3d.scannet.scene import read_axis_alignment, read_mesh, scan_paths, transform_points

    scans_dir, out_dir = Path(scans_dir), Path(out_dir)
    scenes = scenes or sorted(p.name for p in scans_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    splits = splits or {"train": scenes}
    items, selections, boxes = [], [], {}
    progress.start("export", len(scenes), "exporting posed_images", unit="scenes")
    for scene_id in scenes:
        paths = scan_paths(scans_dir, scene_id)
        axis, _ = read_axis_alignment(paths.meta)
        mesh = read_mesh(paths.mesh)
        vertices = transform_points(axis, mesh.vertices)
        mesh_voxels = MeshVoxels(vertices)
        scene_dir = out_dir / "posed_images" / scene_id
        scene_dir.mkdir(parents=True, exist_ok=True)
        hdr, images, voxels = _export_frames(paths.sens, scene_dir, stride, axis, mesh_voxels, scene_id)
        items.append({"sample_idx": f"scannet/{scene_id}", "axis_align_matrix": axis.astype(np.float64),
                      "cam2img": hdr.intrinsic_color.astype(np.float64),
                      "depth_cam2img": hdr.intrinsic_depth.astype(np.float64), "images": images, "instances": []})
        selections.append(_selection_record(scene_id, voxels, mesh_voxels.count, seed))
        boxes[scene_id] = _gt_boxes(scans_dir, scene_id, vertices)
        bev = render_bev(vertices, mesh.colors, mesh.faces, bev_size)
        bev_dir = out_dir / "bev" / scene_id
        bev_dir.mkdir(parents=True, exist_ok=True)
        (bev_dir / "view_0.jpg").write_bytes(released_style_bev(bev.rgb, hdr.depth_size))
        progress.advance("export")
    progress.finish("export")
    _write_metadata(out_dir, items, selections, boxes, splits, seed)
    return scenes


def _write_metadata(out_dir: Path, items, selections, boxes, splits, seed: int) -> None:
    es_dir, meta_dir = out_dir / "embodiedscan", out_dir / "metadata"
    es_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    with open(es_dir / "embodiedscan_infos.pkl", "wb") as f:
        pickle.dump({"metainfo": {"dataset": "scannet (ross3d export)"}, "data_list": items}, f)
    (meta_dir / "scannet_select_frames.json").write_text(json.dumps(selections))
    rng = np.random.default_rng(seed)
    for split, ids in splits.items():
        gt = {f"scannet/{s}": boxes[s] for s in ids if boxes.get(s) is not None}
        pred = {k: (np.asarray(v) + np.pad(rng.normal(0, 0.05, (len(v), 3)), ((0, 0), (0, 3)))).round(6).tolist()
                for k, v in gt.items()}
        (meta_dir / f"scannet_{split}_gt_box.json").write_text(json.dumps(gt))
        (meta_dir / f"scannet_{split}_pred_box.json").write_text(json.dumps(pred))
