"""Read access for training: `CacheReader(cache_dir).load_scene(scene_id, strategy)` returns a scene's arrays as
numpy (each array read whole through memory maps; bf16 features widened exactly to float32 or kept as bits), keys
as in the contract with the strategy prefix removed. Only complete caches are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ross3d.cache.index import read_manifest
from ross3d.cache.store import BF16, bf16_to_float32, open_scene, read_record, scene_path
from ross3d.errors import InputError


class CacheReader:
    """A finished CACHE_DIR: its index, VAE factors and per-scene arrays."""

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)
        self.manifest = read_manifest(self.cache_dir)
        if not self.manifest.get("complete"):
            raise InputError(self.cache_dir / "manifest.json", "cache is incomplete (a run did not finish)")
        self.index = pq.read_table(self.cache_dir / "index.parquet").to_pylist()
        vae = self.manifest["fingerprints"]["vae"]["config"]
        self.shift_factor = float(vae.get("shift_factor") or 0.0)
        self.scaling_factor = float(vae["scaling_factor"])
        self.has_vision = self.manifest["fingerprints"]["vision"] is not None

    def scenes(self, strategy: str) -> list[str]:
        return sorted(r["scene_id"] for r in self.index if r["strategy"] == strategy)

    def load_scene(self, scene_id: str, strategy: str, bf16_bits: bool = False) -> dict[str, np.ndarray]:
        """All arrays of (scene, strategy): bev/*, objects/boxes, objects/object_ids, frames/*, tokens/voxels,
        objects/membership. bf16-stored features are widened exactly to float32, or with `bf16_bits` returned as
        their uint16 bit patterns (the trainer views them as torch.bfloat16 without a copy; widening a scene's
        SigLIP features costs more than reading them)."""
        record = read_record(self.cache_dir, scene_id)
        if record is None or record.get("fingerprint") != self.manifest["fingerprint"]:
            raise InputError(scene_path(self.cache_dir, scene_id), "scene is not committed in this cache")
        if strategy not in record["strategies"]:
            raise InputError(scene_path(self.cache_dir, scene_id), f"strategy {strategy!r} was not cached")
        group = open_scene(self.cache_dir, scene_id)
        out = {}
        for key in record["arrays"]:
            head, _, rest = key.partition("/")
            if head in record["strategies"] and head != strategy:
                continue
            arr = group[key]
            value = arr[...]
            if arr.attrs.get("encoding") == BF16 and not bf16_bits:
                value = bf16_to_float32(value)
            out[rest if head == strategy else key] = value
        return out
