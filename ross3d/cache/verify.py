"""`verify_cache`: re-check a CACHE_DIR against its manifest, scene records and index: every scene committed with
the manifest's fingerprint, each array present with the recorded shape and dtype and the contract's shape rules,
floats finite, the checksum of the bytes as recorded (XXH3-64; CRC32C or sha256 in older records, each verified by
its own algorithm), index rows and checksums consistent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ross3d.cache.index import index_rows, read_manifest
from ross3d.cache.checksum import WRITTEN, algorithm, attestation, checksum_text, recorded
from ross3d.cache.scan import Scan, non_finite_count, scan
from ross3d.cache.store import BF16, open_scene, read_record
from ross3d.errors import InputError
from ross3d.progress import NullProgress, Progress


@dataclass
class VerifyReport:
    scenes: int = 0
    arrays: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _shape_rule(key: str, shape: tuple, record: dict) -> str | None:
    """The contract's shape rules (V frames, 16-channel latents, 729 tokens, the BEV mask on the 2x2 cells of the
    BEV latent) -> a problem or None."""
    v, n_obj, leaf = record["n_frames"], record["n_objects"], key.split("/", 1)[-1]
    bev_cells = record["arrays"].get("bev/vae_mean", {}).get("shape", [0])[-1] // 2
    rules = {
        "frames/frame_idx": lambda s: s == (v,),
        "frames/vae_mean": lambda s: len(s) == 4 and s[0] == v,
        "frames/vae_logvar": lambda s: len(s) == 4 and s[0] == v,
        "frames/vision": lambda s: len(s) == 3 and s[0] == v,
        "tokens/voxels": lambda s: s == (v, 14, 14, 3),
        "objects/membership": lambda s: s == (n_obj, v, 27, 27),
        "objects/boxes": lambda s: s == (n_obj, 6),
        "objects/object_ids": lambda s: s == (n_obj,),
        "bev/valid27": lambda s: s == (bev_cells, bev_cells),
        "bev/vae_mean": lambda s: len(s) == 3,
        "bev/vae_logvar": lambda s: len(s) == 3,
    }
    rule = rules.get(leaf) or rules.get(key)
    if rule is None:
        return f"unexpected array {key}"
    return None if rule(shape) else (f"{key}: shape {shape} breaks the contract (V={v}, objects={n_obj}, BEV mask "
                                     f"{bev_cells}x{bev_cells})")


def _check_array(group, key: str, entry: dict, record: dict) -> tuple[list[str], int]:
    try:
        arr = group[key]
        value = arr[...]
    except Exception as err:  # noqa: BLE001 - any read/decode failure is a finding, not a crash
        return [f"{key}: cannot read ({type(err).__name__}: {err})"], 0
    problems = []
    if list(value.shape) != entry["shape"] or value.dtype.str != entry["dtype"]:
        problems.append(f"{key}: {value.dtype.str}{list(value.shape)} but recorded {entry['dtype']}{entry['shape']}")
    rule = _shape_rule(key, tuple(value.shape), record)
    if rule:
        problems.append(rule)
    return problems + content_problems(key, value, arr.attrs.get("encoding") == BF16, entry), value.nbytes


def content_problems(key: str, value: np.ndarray, bf16: bool, entry: dict, scanned: Scan | None = None) -> list[str]:
    """What is wrong with an array's values: non-finite floats (bf16 bit patterns included; NaN object boxes are
    the contract's padding) and a checksum other than the scene record's `entry`. `scanned`: the array's scan by the
    entry's algorithm if the read made it (ross3d.cache.scan), possibly without finiteness. Shared with the trainer's
    reads."""
    scanned = scanned or scan(value, bf16, algorithm(entry) or WRITTEN)
    problems = []
    if key != "objects/boxes" and not _finite(value, bf16, entry, scanned):
        problems.append(f"{key}: {non_finite_count(value, bf16)} non-finite values")
    if recorded(entry) is None:
        problems.append(f"{key}: no checksum recorded")
    elif checksum_text(scanned.algorithm, scanned.digest) != recorded(entry):
        problems.append(f"{key}: checksum mismatch")
    return problems


def _finite(value: np.ndarray, bf16: bool, entry: dict, scanned: Scan) -> bool:
    """The scan's finiteness; for a scan without it, the writer's attestation when the bytes' checksum is the one
    it found finite (`finite_xxh3`, or `finite_crc32c` of older records, by the scan's algorithm), else a count."""
    if scanned.finite is not None:
        return scanned.finite
    return entry.get(attestation(scanned.algorithm)) == scanned.digest or non_finite_count(value, bf16) == 0


def verify_cache(cache_dir: str | Path, progress: Progress | None = None) -> VerifyReport:
    """Check everything; problems are collected (each prefixed by the scene), never raised."""
    cache_dir, progress = Path(cache_dir), progress or NullProgress()
    manifest = read_manifest(cache_dir)
    report = VerifyReport()
    if not manifest.get("complete"):
        report.problems.append("manifest.json: the run did not finish (complete = false)")
    try:
        index = {(r["scene_id"], r["strategy"]): r for r in pq.read_table(cache_dir / "index.parquet").to_pylist()}
    except (OSError, ValueError) as err:
        raise InputError(cache_dir / "index.parquet", f"cannot read index: {err}") from None
    expected_rows = set()
    scenes = manifest.get("scenes", {})
    progress.start("verify", len(scenes), "verifying", unit="scenes")
    for scene_id, status in sorted(scenes.items()):
        progress.advance("verify")
        if status["status"] != "ok":
            report.problems.append(f"{scene_id}: status {status['status']} ({status.get('error')})")
            continue
        record = read_record(cache_dir, scene_id)
        if record is None or record.get("fingerprint") != manifest["fingerprint"]:
            report.problems.append(f"{scene_id}: not committed with the manifest's fingerprint")
            continue
        report.scenes += 1
        group = open_scene(cache_dir, scene_id)
        for key, entry in record["arrays"].items():
            problems, nbytes = _check_array(group, key, entry, record)
            report.problems += [f"{scene_id}: {p}" for p in problems]
            report.arrays, report.bytes = report.arrays + 1, report.bytes + nbytes
            if status.get("checksums", {}).get(key) != recorded(entry):
                report.problems.append(f"{scene_id}: {key}: manifest checksum differs from the scene record")
        for row in index_rows(record):
            expected_rows.add((scene_id, row["strategy"]))
            if index.get((scene_id, row["strategy"])) != row:
                report.problems.append(f"{scene_id}/{row['strategy']}: index row differs from the scene record")
    if manifest.get("complete") and not report.scenes:
        report.problems.append("manifest.json: no scene is cached")
    for extra in sorted(set(index) - expected_rows):
        report.problems.append(f"{extra[0]}/{extra[1]}: index row without a verified scene")
    progress.finish("verify")
    return report
