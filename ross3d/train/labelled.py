"""Which samples.parquet rows a run trains on, and the semi-supervised protocol's split of the training scenes
(docs/vision-only.md).

`data.labelled_fraction: F` keeps the text samples of a seeded fraction F of the training scenes (the scenes with
text samples in `data.split`, whatever `data.tasks` selects); with `data.unlabelled_as_vision_only` every other
training scene becomes one vision-only sample. The labelled scenes are the first round(F * n) (halves up) of a
permutation of the n sorted scene ids seeded by `data.labelled_seed`: the split depends neither on the row order of
samples.parquet nor on the other splits' rows (which are never read), and with one seed a larger fraction keeps
every labelled scene of a smaller one. A run records its split in OUTPUT_DIR/labelled_split.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ross3d.errors import InputError
from ross3d.prep.qa.schema import VISION_ONLY, Sample, read_samples, vision_only_sample
from ross3d.train.config import DataConfig

SPLIT_FILE = "labelled_split.json"


@dataclass(frozen=True)
class LabelledSplit:
    """The training scenes that keep their text samples (labelled) and those that do not (unlabelled)."""

    split: str
    labelled_fraction: float
    labelled_seed: int
    unlabelled_as_vision_only: bool
    labelled: tuple[str, ...]
    unlabelled: tuple[str, ...]


def split_scenes(scene_ids: Iterable[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(labelled, unlabelled) scene ids, each sorted: round(fraction * n) seeded picks of the n distinct ids."""
    scenes = sorted(set(scene_ids))
    keep = math.floor(fraction * len(scenes) + 0.5)
    picked = {scenes[i] for i in np.random.default_rng(seed).permutation(len(scenes))[:keep]}
    return sorted(picked), [s for s in scenes if s not in picked]


def labelled_split(rows: Sequence[Sample], config: DataConfig) -> LabelledSplit | None:
    """The split of the training scenes among `rows` (the rows of `config.split`); None with `labelled_fraction` 1."""
    if config.labelled_fraction >= 1:
        return None
    labelled, unlabelled = split_scenes((r.scene_id for r in rows if r.task != VISION_ONLY),
                                        config.labelled_fraction, config.labelled_seed)
    return LabelledSplit(config.split, config.labelled_fraction, config.labelled_seed,
                         config.unlabelled_as_vision_only, tuple(labelled), tuple(unlabelled))


def training_rows(config: DataConfig) -> tuple[list[Sample], LabelledSplit | None]:
    """The rows of `config.split` and `config.tasks` the run trains on, in file order (the vision-only rows made for
    unlabelled scenes follow, by scene id), and the labelled split (None with `labelled_fraction` 1)."""
    path = Path(config.prep_dir) / "samples.parquet"
    rows = read_samples(path, splits=[config.split])
    split = labelled_split(rows, config)
    if split is not None:
        keep = set(split.labelled)
        have_vision_only = {r.scene_id for r in rows if r.task == VISION_ONLY}
        rows = [r for r in rows if r.task == VISION_ONLY or r.scene_id in keep]
        if config.unlabelled_as_vision_only:
            rows += [vision_only_sample(s) for s in split.unlabelled if s not in have_vision_only]
    rows = [r for r in rows if r.task in config.tasks]
    if not rows:
        raise InputError(path, f"no {config.split!r} samples of tasks {config.tasks}"
                               + (f" in the labelled fraction {config.labelled_fraction}" if split else ""))
    return rows, split


def write_split(output_dir: str | Path, split: LabelledSplit) -> Path:
    """OUTPUT_DIR/labelled_split.json: the protocol's options and both scene lists."""
    path = Path(output_dir) / SPLIT_FILE
    record = {**asdict(split), "labelled": list(split.labelled), "unlabelled": list(split.unlabelled)}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
