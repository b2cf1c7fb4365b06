"""Export synthetic ScanNet-layout scans as the data Ross3D / Video-3D-LLM users already have, so the
`ross3d prep scannet --source posed-images` path and the original's released files are testable without the real
downloads. The frames come from each scan's `.sens`, read with ross3d.scannet.sens.SensReader (tested on its own
against hand-written streams); everything the original derived from the scans comes from the generator's own
`SceneDescription` (ross3d.synth.description) and code written here for the purpose, never from ross3d's prep code,
because the compatibility tests compare prep against these files:

- `OUT/posed_images/<scene>/`: every stride-th frame of the `.sens` as the original export writes it
  (docs/original-data.md B.3): `<idx5>.jpg` colour **re-encoded** (PIL, quality 75 as imageio's default),
  `<idx5>.png` 16-bit depth in mm, `<idx5>.txt` the raw camera-to-world pose as 4 lines of `%f` values (`-inf`
  for invalid poses), `intrinsic.txt` and `depth_intrinsic.txt`;
- `OUT/embodiedscan/embodiedscan_infos.pkl`: `{"metainfo": ..., "data_list": [...]}` with one item per scene
  (`sample_idx` "scannet/<scene>", the description's `axis_align_matrix`, `cam2img`, `depth_cam2img`, `images` with
  `img_path`, `depth_path`, `cam2global` (raw pose) for every exported frame);
- `OUT/bev/<scene>/view_0.jpg`: BEV images in the released style: the description's mesh without its ceiling faces,
  cut 0.8 m below the ceiling (at least half the room height up: docs/data-format.md's cut with the description's
  floor and ceiling), rasterised top-down by ross3d.synth.top_down on the square of docs/data-format.md's pixel
  convention (centred on the vertices' xy extent, 2% margin per side); the square is centred on a black canvas
  with the depth frame's aspect (int(W_d * S / H_d) x S, 576 x 432 for ScanNet) and saved as JPEG (quality 95,
  no chroma subsampling): the original loader's resize to that same size is then the identity and its centre crop
  recovers the square (up to JPEG loss);
- `OUT/metadata/scannet_select_frames.json`: the original's max-coverage (B.7) written out plainly in
  ross3d.synth.original_selection, over the description's mesh voxels and the depth of the exported valid frames;
- `OUT/metadata/scannet_{split}_gt_box.json` (the description's object boxes, list index = objectId; a scene whose
  ids are not 0..K-1 or that has an object without geometry is dropped, as the original) and
  `scannet_{split}_pred_box.json` (the same boxes with centres moved by seeded 5 cm noise: synthetic proposals),
  B.6 format.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from ross3d.progress import NullProgress, Progress
from ross3d.synth.description import SceneDescription
from ross3d.synth.original_selection import depth_points, selection_record, voxel_keys
from ross3d.synth.top_down import rasterise_top_down

JPEG_QUALITY = 75
BEV_JPEG_QUALITY = 95
BEV_MARGIN = 0.02  # of the square's side, per side (docs/data-format.md)
CUT_BELOW_CEILING = 0.8  # metres (docs/data-format.md's ceiling rule)


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


def bev_bounds(scene: SceneDescription) -> tuple[float, float, float, float]:
    """xmin, ymin, xmax, ymax of the square centred on the vertices' xy extent, BEV_MARGIN of its side per side."""
    xy = scene.vertices[:, :2]
    centre, extent = (xy.min(0) + xy.max(0)) / 2, float((xy.max(0) - xy.min(0)).max())
    half = extent / 2 / (1 - 2 * BEV_MARGIN)
    return centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half


def bev_cut(scene: SceneDescription) -> float:
    """The height the released-style BEV is cut at: CUT_BELOW_CEILING under the ceiling, at least mid-height."""
    return max(scene.room_height - CUT_BELOW_CEILING, scene.room_height / 2)


def description_bev(scene: SceneDescription, size: int) -> np.ndarray:
    """(S, S, 3) uint8 top-down view of the description without its ceiling faces, cut at `bev_cut`."""
    rgb, _ = rasterise_top_down(scene.vertices, scene.colors, scene.faces[~scene.ceiling], bev_bounds(scene), size,
                                bev_cut(scene))
    return rgb


def _reencode(jpeg: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _export_frames(sens_path: Path, scene_dir: Path, stride: int, scene: SceneDescription, mesh_voxels: np.ndarray):
    """Write the frame files; returns the header, the pkl image records and per valid frame its mesh voxels."""
    import cv2

    from ross3d.scannet.sens import SensReader

    images, voxels = [], {}
    with SensReader(sens_path) as reader:
        hdr = reader.header
        write_matrix_txt(scene_dir / "intrinsic.txt", hdr.intrinsic_color)
        write_matrix_txt(scene_dir / "depth_intrinsic.txt", hdr.intrinsic_depth)
        k_depth = hdr.intrinsic_depth.astype(np.float64)
        for frame in reader.frames(stride):
            stem = f"{frame.index:05d}"
            (scene_dir / f"{stem}.jpg").write_bytes(_reencode(frame.color_jpeg))
            cv2.imwrite(str(scene_dir / f"{stem}.png"), frame.depth)
            write_matrix_txt(scene_dir / f"{stem}.txt", frame.pose)
            prefix = f"scannet/posed_images/{scene.scene_id}/{stem}"
            images.append({"img_path": f"{prefix}.jpg", "depth_path": f"{prefix}.png",
                           "cam2global": frame.pose.astype(np.float64)})
            if frame.valid:
                pose = scene.axis_align @ frame.pose.astype(np.float64)
                seen = voxel_keys(depth_points(frame.depth, k_depth, pose, hdr.depth_shift))
                voxels[frame.index] = np.intersect1d(seen, mesh_voxels, assume_unique=True)
    return hdr, images, voxels


def gt_boxes(scene: SceneDescription) -> list[list[float]] | None:
    """The description's boxes indexed by objectId, or None when the ids are not 0..K-1 or an object has no
    geometry (B.6)."""
    if scene.object_ids != list(range(len(scene.object_ids))) or any(b is None for b in scene.object_boxes):
        return None
    return [[round(float(v), 6) for v in b] for b in scene.object_boxes]


def scannet_splits(metadata_dir: str | Path) -> dict[str, list[str]] | None:
    """{split: scene ids} from `scannetv2_{train,val,test}.txt` in `metadata_dir` (None when there are none)."""
    splits = {}
    for split in ("train", "val", "test"):
        path = Path(metadata_dir) / f"scannetv2_{split}.txt"
        if path.is_file():
            splits[split] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return splits or None


def export_posed_images(scans_dir: str | Path, out_dir: str | Path, scenes: list[SceneDescription], *,
                        stride: int = 10, bev_size: int = 432, seed: int = 0,
                        splits: dict[str, list[str]] | None = None, progress: Progress = NullProgress()
                        ) -> list[str]:
    """Write the layouts of the module docstring for the described `scenes`, whose `.sens` streams are in
    SCANS_DIR/<scene>/; `splits` names the box files (default: every scene in "train"). Returns the exported scene
    ids."""
    scans_dir, out_dir = Path(scans_dir), Path(out_dir)
    ids = [scene.scene_id for scene in scenes]
    splits = splits or {"train": ids}
    items, selections, boxes = [], [], {}
    progress.start("export", len(scenes), "exporting posed_images", unit="scenes")
    for scene in scenes:
        scene_dir = out_dir / "posed_images" / scene.scene_id
        scene_dir.mkdir(parents=True, exist_ok=True)
        sens = scans_dir / scene.scene_id / f"{scene.scene_id}.sens"
        hdr, images, voxels = _export_frames(sens, scene_dir, stride, scene, voxel_keys(scene.vertices))
        items.append({"sample_idx": f"scannet/{scene.scene_id}", "axis_align_matrix": scene.axis_align.copy(),
                      "cam2img": hdr.intrinsic_color.astype(np.float64),
                      "depth_cam2img": hdr.intrinsic_depth.astype(np.float64), "images": images, "instances": []})
        selections.append(selection_record(scene.scene_id, voxels, seed))
        boxes[scene.scene_id] = gt_boxes(scene)
        bev_dir = out_dir / "bev" / scene.scene_id
        bev_dir.mkdir(parents=True, exist_ok=True)
        (bev_dir / "view_0.jpg").write_bytes(released_style_bev(description_bev(scene, bev_size), hdr.depth_size))
        progress.advance("export")
    progress.finish("export")
    _write_metadata(out_dir, items, selections, boxes, splits, seed)
    return ids


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
