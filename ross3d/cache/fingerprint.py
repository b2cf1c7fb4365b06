"""Cache provenance: digests of encoder weights and configs, the fingerprint tree of a cache run (encoders,
preprocessing, storage, PREP), its short digest, and a readable list of what differs between two trees."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ross3d.errors import InputError

FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_digest(model_dir: str | Path) -> str:
    """sha256 over the weight files of a save_pretrained folder (relative names and bytes, sorted)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise InputError(model_dir, "no weight files (*.safetensors, *.bin) found")
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def saved_config(model_dir: str | Path) -> dict:
    """config.json of a save_pretrained folder without bookkeeping keys (leading `_`, library versions)."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read encoder config: {err}") from None
    return {k: v for k, v in config.items() if not k.startswith("_") and not k.endswith("_version")}


def digest(tree: dict) -> str:
    """16 hex digits of sha256 over the canonical JSON of a fingerprint tree."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def flatten(tree, prefix=""):
    """Nested mappings -> {"a.b.c": leaf}."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def differences(old: dict, new: dict, limit: int = 6) -> list[str]:
    """'key: old -> new' for each leaf that differs (at most `limit`, long values shortened)."""
    a, b = flatten(old), flatten(new)

    def short(value):
        text = json.dumps(value, sort_keys=True) if value is not None else "absent"
        return text if len(text) <= 40 else text[:37] + "..."

    diffs = [f"{k}: {short(a.get(k))} -> {short(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return diffs[:limit] + ([f"... and {len(diffs) - limit} more"] if len(diffs) > limit else [])
