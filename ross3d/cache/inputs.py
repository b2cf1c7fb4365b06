"""Reading stage 2's input from PREP_DIR: the manifest fingerprint, the ok scenes with their depth sizes, the
selected frames per strategy and the objects; and `load_scene`, which decodes a scene's selected JPEGs (each frame
once, even when both strategies pick it) and gathers what training needs from arrays.zarr."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ross3d.cache.preprocess import bev_mask, decode_view
from ross3d.errors import InputError
from ross3d.safe_names import check_scene_id, child_path

@dataclass
class PrepScene:
    """What stage 2 needs to know about one PREP scene before reading its files."""

    scene_id: str
    depth_size: tuple[int, int]
    frames: dict[str, np.ndarray]  # strategy -> frame_idx in selection order
    boxes: np.ndarray  # (n_obj, 6) f32
    object_ids: np.ndarray  # (n_obj,) i32
    inputs_fingerprint: str = ""  # of the raw files prep read (PREP manifest.json); a change re-caches the scene


@dataclass
class PrepIndex:
    prep_dir: Path
    fingerprint: str
    bev_size: int  # PREP's --bev-size: every scene's BEV is bev_size x bev_size
    scenes: list[PrepScene]
    failed: list[str] = field(default_factory=list)


def read_prep_table(path: Path, columns: list[str]):
    """`columns` of a PREP_DIR Parquet table; InputError naming the file when it cannot be read."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read table: {err}") from None


def read_prep(prep_dir: str | Path, strategies: tuple[str, ...]) -> PrepIndex:
    """Index a finished PREP_DIR (its manifest must exist: prep writes it last)."""
    prep_dir = Path(prep_dir)
    manifest_path = prep_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        fingerprint, bev_size = manifest["options_fingerprint"], int(manifest["options"]["bev_size"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(manifest_path, f"not a finished PREP_DIR ({err})") from None
    scenes = read_prep_table(prep_dir / "scenes.parquet",
                             ["scene_id", "depth_width", "depth_height", "status"]).to_pylist()
    for row in scenes:
        check_scene_id(row["scene_id"], prep_dir / "scenes.parquet")
    selected: dict[tuple[str, str], list[tuple[int, int]]] = {}
    selections = read_prep_table(prep_dir / "selections.parquet", ["scene_id", "strategy", "rank", "frame_idx"])
    for r in selections.to_pylist():
        selected.setdefault((r["scene_id"], r["strategy"]), []).append((r["rank"], r["frame_idx"]))
    objects: dict[str, list[dict]] = {}
    for r in read_prep_table(prep_dir / "objects.parquet", ["scene_id", "object_id", "box"]).to_pylist():
        objects.setdefault(r["scene_id"], []).append(r)
    out = PrepIndex(prep_dir, fingerprint, bev_size, [], [r["scene_id"] for r in scenes if r["status"] != "ok"])
    for row in scenes:
        if row["status"] != "ok":
            continue
        sid = row["scene_id"]
        frames = {}
        for strategy in strategies:
            rows = sorted(selected.get((sid, strategy), []))
            if not rows:
                raise InputError(prep_dir / "selections.parquet", f"no {strategy} frames for scene {sid}")
            frames[strategy] = np.asarray([f for _, f in rows], np.int32)
        mine = objects.get(sid, [])
        out.scenes.append(PrepScene(
            sid, (int(row["depth_width"]), int(row["depth_height"])), frames,
            np.asarray([o["box"] for o in mine], np.float32).reshape(-1, 6),
            np.asarray([o["object_id"] for o in mine], np.int32),
            str((manifest.get("scenes") or {}).get(sid, {}).get("inputs_fingerprint", ""))))
    return out


@dataclass
class LoadedScene:
    """A scene ready for the encoders: unique views (uint8, 384^2) and the arrays copied from PREP."""

    scene: PrepScene
    frame_idx: np.ndarray  # (U,) unique selected frames, sorted
    views: np.ndarray  # (U, 384, 384, 3) uint8
    positions: dict[str, np.ndarray]  # strategy -> index into frame_idx per selected frame
    bev_rgb: np.ndarray  # (S, S, 3) uint8
    copies: dict[str, np.ndarray]  # contract keys -> arrays copied from PREP


def load_scene(prep_dir: Path, scene: PrepScene, bev_size: int, mask_size: int) -> LoadedScene:
    """Decode the selected JPEGs and read voxels, membership and BEV of one scene (runs in a worker thread); the
    BEV must be `bev_size` square, its loss mask is `mask_size` square."""
    import zarr

    scene_dir = child_path(prep_dir / "scenes", scene.scene_id)
    unique = np.unique(np.concatenate(list(scene.frames.values())))
    frames_path = scene_dir / "frames.parquet"
    try:
        table = pq.read_table(frames_path, columns=["frame_idx", "color_jpeg"],
                              filters=pc.field("frame_idx").isin(unique.tolist()))
    except (OSError, ValueError) as err:
        raise InputError(frames_path, f"cannot read frames: {err}") from None
    by_idx = dict(zip(table.column("frame_idx").to_pylist(), table.column("color_jpeg").to_pylist()))
    missing = [int(i) for i in unique if int(i) not in by_idx]
    if missing:
        raise InputError(frames_path, f"selected frames {missing[:5]} are missing")
    views = np.stack([decode_view(by_idx[int(i)], *scene.depth_size, source=f"{frames_path} frame {int(i)}")
                      for i in unique])
    try:
        store = zarr.open_group(scene_dir / "arrays.zarr", mode="r")
        bev = np.asarray(store["bev/rgb"][...])
        if bev.shape != (bev_size, bev_size, 3):
            raise ValueError(f"bev/rgb is {bev.shape}, PREP's --bev-size {bev_size} gives {(bev_size, bev_size, 3)}")
        copies = {"bev/valid27": bev_mask(bev, mask_size), "objects/boxes": scene.boxes,
                  "objects/object_ids": scene.object_ids}
        for strategy, idx in scene.frames.items():
            copies[f"{strategy}/frames/frame_idx"] = idx
            copies[f"{strategy}/tokens/voxels"] = np.asarray(store[f"voxels/{strategy}"][...], np.int16)
            copies[f"{strategy}/objects/membership"] = np.asarray(store[f"membership/{strategy}"][...], bool)
    except (KeyError, OSError, ValueError) as err:
        raise InputError(scene_dir / "arrays.zarr", f"cannot read PREP arrays: {err}") from None
    positions = {s: np.searchsorted(unique, idx) for s, idx in scene.frames.items()}
    return LoadedScene(scene, unique, views, positions, bev, copies)
