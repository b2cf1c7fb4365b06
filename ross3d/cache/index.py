"""CACHE_DIR/index.parquet (one row per scene and strategy, merged from the committed scene records once at the
end) and CACHE_DIR/manifest.json (fingerprints, per-scene status, `complete` only after the index is written)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from ross3d import __version__
from ross3d.cache.checksum import recorded
from ross3d.cache.fingerprint import FORMAT_VERSION
from ross3d.cache.store import read_record
from ross3d.errors import InputError
from ross3d.prep.options import STRATEGIES
from ross3d.prep.store import write_json_atomic, write_table_atomic

INDEX_SCHEMA = pa.schema([
    ("scene_id", pa.string()), ("strategy", pa.string()), ("n_frames", pa.int32()), ("n_objects", pa.int32()),
    ("arrays", pa.list_(pa.string())), ("checksum", pa.string()),
])


def strategy_arrays(record: dict, strategy: str) -> list[str]:
    """The arrays a (scene, strategy) row covers: the scene-level ones and the strategy's own."""
    def owner(key: str) -> str | None:
        head = key.split("/", 1)[0]
        return head if head in STRATEGIES else None

    return sorted(k for k in record["arrays"] if owner(k) in (None, strategy))


def row_checksum(record: dict, arrays: list[str]) -> str:
    """sha256 over 'path=checksum' lines of the row's arrays (checksums as `ross3d.cache.checksum.recorded`)."""
    text = "\n".join(f"{k}={recorded(record['arrays'][k])}" for k in arrays)
    return hashlib.sha256(text.encode()).hexdigest()


def index_rows(record: dict) -> list[dict]:
    rows = []
    for strategy in record["strategies"]:
        arrays = strategy_arrays(record, strategy)
        rows.append({"scene_id": record["scene_id"], "strategy": strategy, "n_frames": record["n_frames"],
                     "n_objects": record["n_objects"], "arrays": arrays, "checksum": row_checksum(record, arrays)})
    return rows


def write_index_and_manifest(cache_dir: Path, tree: dict, digest: str, failed: dict[str, str], complete: bool,
                             scene_ids: list[str] | None = None, prep_failed: list[str] | None = None) -> None:
    """At the start (complete=False): the manifest alone. At the end: index rows of every committed scene with
    this fingerprint, then the manifest with per-scene status (scenes that failed in prep are listed apart)."""
    status: dict[str, dict] = {}
    rows: list[dict] = []
    for scene_id in scene_ids or []:
        record = read_record(cache_dir, scene_id)
        if scene_id in failed:
            status[scene_id] = {"status": "failed", "error": failed[scene_id]}
        elif record is None or record.get("fingerprint") != digest:
            status[scene_id] = {"status": "missing", "error": "no committed scene with this fingerprint"}
        else:
            status[scene_id] = {"status": "ok", "error": None,
                                "checksums": {k: recorded(v) for k, v in record["arrays"].items()}}
            rows.extend(index_rows(record))
    if complete:
        write_table_atomic(cache_dir / "index.parquet", rows, INDEX_SCHEMA)
    write_json_atomic(cache_dir / "manifest.json", {
        "format_version": FORMAT_VERSION, "ross3d_version": __version__, "fingerprint": digest,
        "fingerprints": tree, "complete": complete, "scenes": status, "prep_failed": sorted(prep_failed or [])})


def read_manifest(cache_dir: Path) -> dict:
    path = Path(cache_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read cache manifest: {err}") from None
