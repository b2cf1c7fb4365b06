"""`ross3d prep vision-only`: scenes appended to PREP_DIR/samples.parquet as `vision_only` training rows, scenes
without a conversation that train only the reconstruction losses (docs/vision-only.md).

The rows already in samples.parquet are kept as they are; a scene that has its vision-only row is not added again,
so a rerun adds nothing. The file is rewritten atomically (ross3d.prep.qa.schema.write_samples) under PREP_DIR's
lock, and nothing is written when a requested scene is refused: one that is not a prepared scene (scenes.parquet,
status ok) or a held-out scene, whose samples all lie outside the train split (training on its images would leak
it into the model evaluated on it). `--all` takes every prepared scene without a sample of its own. A later
`prep qa` keeps these rows, but those of scenes its samples hold out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ross3d.errors import InputError
from ross3d.locking import exclusive_lock
from ross3d.prep.qa.run import SAMPLES_FILE
from ross3d.prep.qa.scene_index import load_scene_index
from ross3d.prep.qa.schema import (VISION_ONLY, Sample, held_out_scenes, read_samples, vision_only_sample,
                                   write_samples)
from ross3d.safe_names import check_scene_id


@dataclass
class VisionOnlyReport:
    samples_path: Path
    added: list[str] = field(default_factory=list)  # scenes that got their vision-only row now
    present: list[str] = field(default_factory=list)  # scenes that already had one


def _check_requested(scenes: Sequence[str], prep_dir: Path, rows: Sequence[Sample], samples_path: Path) -> None:
    index = load_scene_index(prep_dir)
    held_out = held_out_scenes(rows)
    for scene_id in scenes:
        check_scene_id(scene_id, "--scenes")
        if scene_id in index.failed:
            raise InputError(prep_dir / "scenes.parquet", f"scene {scene_id!r} failed in prep scannet")
        if scene_id not in index.scenes:
            raise InputError(prep_dir / "scenes.parquet", f"scene {scene_id!r} is not a prepared scene")
        if scene_id in held_out:
            raise InputError(samples_path, f"scene {scene_id!r} is held out (its samples are all outside the "
                                           "train split); a vision-only row would train on it")


def append_vision_only(prep_dir: str | Path, scenes: Sequence[str] | None) -> VisionOnlyReport:
    """Append a vision-only row for each of `scenes` (None: every prepared scene without samples) that lacks one."""
    prep_dir = Path(prep_dir)
    path = prep_dir / SAMPLES_FILE
    with exclusive_lock(prep_dir, "prep vision-only"):
        rows = read_samples(path) if path.exists() else []
        if scenes is None:
            with_samples = {r.scene_id for r in rows if r.task != VISION_ONLY}
            scenes = sorted(load_scene_index(prep_dir).scenes - with_samples)
        else:
            scenes = list(dict.fromkeys(scenes))
            _check_requested(scenes, prep_dir, rows, path)
        have = {r.scene_id for r in rows if r.task == VISION_ONLY}
        report = VisionOnlyReport(path, [s for s in scenes if s not in have], [s for s in scenes if s in have])
        if report.added:
            write_samples(path, [*rows, *(vision_only_sample(s) for s in report.added)])
    return report
