"""Read access for training: `CacheReader(cache_dir).load_scene(scene_id, strategy)` returns a scene's arrays as
numpy (each array read whole through memory maps; bf16 features widened exactly to float32 or kept as bits), keys
as in the contract with the strategy prefix removed. Only complete caches are read.

With `check=True` (the trainer's first read of each scene) every array is also checked as `ross3d verify` checks it:
its checksum (XXH3-64; CRC32C or sha256 in older records, by their own algorithm) against the scene record and
finite values, for the arrays stored uncompressed (almost all of a scene's bytes) in the same pass as the copy that
reads them; finiteness the writer attested for exactly these bytes (`finite_xxh3` = their XXH3, `finite_crc32c` =
their CRC32C in older records) is not checked again. An unreadable (e.g. truncated) chunk names its file. Before
training, `check_provenance` compares the cache's PREP fingerprint with PREP_DIR's and `missing` lists the scenes a
run needs that the cache lacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ross3d.cache.index import read_manifest
from ross3d.cache.scan import Scan, Scanner, copy_in_blocks
from ross3d.cache.store import BF16, bf16_to_float32, open_scene, read_record, scene_path
from ross3d.cache.verify import content_problems
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

    def check_provenance(self, prep_dir: str | Path) -> None:
        """Refuse a cache that was not built from PREP_DIR's options (their fingerprints differ)."""
        path = Path(prep_dir) / "manifest.json"
        try:
            prep = json.loads(path.read_text())["options_fingerprint"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(path, f"not a finished PREP_DIR ({err})") from None
        cached = self.manifest["fingerprints"].get("prep")
        if cached != prep:
            raise InputError(self.cache_dir / "manifest.json", f"cache was built from another PREP_DIR than "
                                                               f"{prep_dir} (PREP fingerprint {cached} != {prep})")

    def missing(self, scene_ids, strategy: str) -> list[str]:
        """The given scenes without a cached (scene, strategy) row, sorted."""
        return sorted(set(scene_ids) - set(self.scenes(strategy)))

    def load_scene(self, scene_id: str, strategy: str, bf16_bits: bool = False,
                   check: bool = False) -> dict[str, np.ndarray]:
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
            bf16 = arr.attrs.get("encoding") == BF16
            chunk = scene_path(self.cache_dir, scene_id) / key / arr.metadata.encode_chunk_key((0,) * arr.ndim)
            value, scanned = _read(arr, chunk, bf16, record["arrays"][key] if check else None)
            if check:
                problems = content_problems(key, value, bf16, record["arrays"][key], scanned)
                if problems:
                    raise InputError(scene_path(self.cache_dir, scene_id), "; ".join(problems) +
                                     " (run `ross3d verify` on the cache)")
            if bf16 and not bf16_bits:
                value = bf16_to_float32(value)
            out[rest if head == strategy else key] = value
        return out


def _read(arr, chunk: Path, bf16: bool, entry: dict | None) -> tuple[np.ndarray, Scan | None]:
    """An array's values, and to check them against their record `entry` (None: unchecked) their scan when the read
    could make it: an array stored as one raw chunk is copied from its memory map block by block, each block
    scanned right after its copy (ross3d.cache.scan, `Scanner.for_entry`); zarr reads the others (compressed or
    absent chunks), and an unreadable chunk names its file."""
    from ross3d.cache.mapped_store import raw_chunk  # zarr-backed, as open_scene

    raw = raw_chunk(arr, chunk)
    if raw is not None:
        scanner = Scanner.for_entry(raw, bf16, entry) if entry is not None else None
        value = copy_in_blocks(raw, scanner.update if scanner else None)
        return value, scanner.result() if scanner else None
    try:
        return arr[...], None
    except Exception as err:  # noqa: BLE001 - any read/decode failure of a chunk is bad input
        raise InputError(chunk, f"cannot read {arr.path} ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]})") from None
