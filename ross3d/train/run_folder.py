"""The rules of a run folder (OUTPUT_DIR): one training run at a time, a fresh run never silently replaces a
previous one, and a resumed run continues the config its checkpoint was trained with.

- `claim_fresh(out, overwrite)`: a folder holding a previous run's outputs is refused unless `overwrite`, which
  removes exactly those outputs (nothing else in the folder).
- `check_resume_config(saved, current, allowed, source)`: refuses a resumed run whose config differs from the
  checkpoint's, naming the changed keys; keys in `allowed` (or under an allowed section) may change on purpose,
  and the data-feeding keys in `FREE_KEYS` (they change no number the run computes) may always change.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ross3d.cache.fingerprint import flatten
from ross3d.errors import ConfigError, InputError
from ross3d.train.labelled import SPLIT_FILE
from ross3d.train.language_warmup import LOG_FILE as WARMUP_LOG
from ross3d.train.metrics import WANDB_RUN

RUN_OUTPUTS = ("config.yaml", "log.jsonl", "loss_curve.png", "checkpoints", "tensorboard", "tokenizer", "wandb",
               WANDB_RUN, SPLIT_FILE, WARMUP_LOG)
PREVIEWS = "reconstruction_step_*.png"
FREE_KEYS = frozenset({"output_dir", "data.num_workers", "data.prefetch_factor", "data.pin_memory",
                       "data.scene_cache"})


TRAINED = ("log.jsonl", "checkpoints")  # a run that reached step 1 (one that failed before leaves neither)


def previous_outputs(out: Path) -> list[Path]:
    return [out / n for n in RUN_OUTPUTS if (out / n).exists()] + sorted(out.glob(PREVIEWS))


def claim_fresh(out: Path, overwrite: bool) -> None:
    """Make `out` ready for a new run: refuse a previous run that trained, or remove its outputs with `overwrite`
    (the leftovers of a run that failed before step 1 are replaced without asking)."""
    previous = previous_outputs(out)
    if any(p.name in TRAINED for p in previous) and not overwrite:
        names = ", ".join(p.name for p in previous[:4])
        raise InputError(out, f"holds a previous run ({names}); pass --resume to continue it or --overwrite to "
                              f"replace it")
    for path in previous:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _allowed(key: str, allowed: Sequence[str]) -> bool:
    return key in FREE_KEYS or any(key == a or key.startswith(f"{a}.") for a in allowed)


def check_resume_config(saved: dict, current: dict, allowed: Sequence[str], source: Path) -> None:
    """Raise ConfigError naming every key (old -> new) that differs from the checkpoint's config and is not
    allowed to; an allowed key that is no config key is an error too (a typo would allow nothing)."""
    old, new = flatten(saved), flatten(current)
    unknown = [a for a in allowed if not any(k == a or k.startswith(f"{a}.") for k in new)]
    if unknown:
        raise ConfigError(f"--allow-change {unknown[0]}: not a config key")
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not _allowed(k, allowed)]
    if changed:
        listed = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed)
        raise ConfigError(f"--resume: the config differs from {source} in {listed}; pass --allow-change KEY for "
                          f"each change you mean")
