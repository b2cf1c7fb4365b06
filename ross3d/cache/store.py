"""CACHE_DIR storage: one Zarr v3 group per scene (every array one chunk, one file), written into a temporary folder
with its record (`scene.json`: fingerprint digest, shapes, dtypes, a checksum per array, ross3d.cache.checksum) written last, then renamed into
`cache.zarr/<scene_id>`; a scene without its record is incomplete. Arrays carry Zarr v3 `dimension_names`
(`DIMENSIONS`), so xarray opens a scene's groups as datasets. Scenes are read through memory maps (`open_scene`).
Also the bf16 bit encoding of features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ross3d.cache.scan import checksum_fields
from ross3d.prep.store import clean_stale, commit_dir, temp_path, write_json_atomic
from ross3d.safe_names import child_path

ZARR_DIR = "cache.zarr"
SCENE_RECORD = "scene.json"
BF16 = "bfloat16"
# dimension names by array name within its group (the contract's shapes, docs/data-format.md); names are unique per
# size within a group, as xarray needs: the BEV latent's 54 x 54 (y, x) beside its 27 x 27 mask (cell_y, cell_x)
DIMENSIONS = {
    "bev/vae_mean": ("channel", "y", "x"), "bev/vae_logvar": ("channel", "y", "x"),
    "bev/valid27": ("cell_y", "cell_x"),
    "objects/boxes": ("object", "box"), "objects/object_ids": ("object",),
    "frames/frame_idx": ("view",), "frames/vae_mean": ("view", "channel", "y", "x"),
    "frames/vae_logvar": ("view", "channel", "y", "x"), "frames/vision": ("view", "token", "feature"),
    "tokens/voxels": ("view", "row", "col", "xyz"), "objects/membership": ("object", "view", "y", "x"),
}


def dimension_names(key: str, ndim: int) -> tuple[str, ...] | None:
    """The dimension names of a scene array (`bev/...`, `objects/...` or `<strategy>/<group>/<name>`)."""
    names = DIMENSIONS.get(key) or DIMENSIONS.get(key.split("/", 1)[-1])
    return names if names is not None and len(names) == ndim else None


def bf16_bits(x: torch.Tensor) -> np.ndarray:
    """float tensor -> uint16 bit patterns of its bf16 rounding (round to nearest even, as torch's cast)."""
    return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns -> float32 (exact widening)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def scene_path(cache_dir: Path, scene_id: str) -> Path:
    """CACHE_DIR/cache.zarr/<scene_id> (the id must be a safe name, ross3d.safe_names)."""
    return child_path(Path(cache_dir) / ZARR_DIR, scene_id)


def open_scene(cache_dir: Path, scene_id: str):
    """A scene's Zarr group for reading, served from memory maps (ross3d.cache.mapped_store)."""
    import zarr

    from ross3d.cache.mapped_store import MappedStore

    return zarr.open_group(MappedStore(scene_path(cache_dir, scene_id)), mode="r")


def prepare_store(cache_dir: Path) -> None:
    """Create cache.zarr (a Zarr v3 root group) and drop leftovers of interrupted runs."""
    import zarr

    root = Path(cache_dir) / ZARR_DIR
    zarr.open_group(root, mode="a")
    clean_stale(root)


def write_scene(cache_dir: Path, scene_id: str, arrays: dict[str, np.ndarray], attrs: dict[str, dict],
                record: dict) -> dict:
    """Write a scene's arrays and commit them atomically; returns the record (with per-array checksums)."""
    import zarr
    from zarr.codecs import ZstdCodec

    final = scene_path(cache_dir, scene_id)
    tmp = temp_path(final)
    group = zarr.open_group(tmp, mode="w")
    entries = {}
    for key, value in arrays.items():
        # one chunk per array: a scene is always read whole, and every extra chunk or shard index costs a decode
        # step per read (sharded per-frame chunks made a cold scene read 3x slower)
        compress = value.dtype.kind in "biu" and attrs.get(key, {}).get("encoding") != BF16
        chunks = tuple(max(n, 1) for n in value.shape)
        arr = group.create_array(key, shape=value.shape, dtype=value.dtype, chunks=chunks,
                                 compressors=ZstdCodec(level=3) if compress else None, fill_value=0,
                                 dimension_names=dimension_names(key, value.ndim))
        if value.size:
            arr[...] = value
        arr.attrs.update(attrs.get(key, {}))
        bf16 = attrs.get(key, {}).get("encoding") == BF16
        entries[key] = {"shape": list(value.shape), "dtype": value.dtype.str, **checksum_fields(value, bf16)}
    record = {**record, "scene_id": scene_id, "arrays": entries}
    write_json_atomic(tmp / SCENE_RECORD, record)
    commit_dir(tmp, final)
    return record


def read_record(cache_dir: Path, scene_id: str) -> dict | None:
    """The committed record of a scene, or None when the scene is absent or incomplete."""
    try:
        return json.loads((scene_path(cache_dir, scene_id) / SCENE_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None

