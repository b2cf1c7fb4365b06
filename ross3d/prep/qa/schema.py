"""The samples.parquet contract: one row per training/evaluation sample, shared by `prep qa`, the trainer and eval.

Columns: sample_id (unique, `<task>/<split>/<original id>[/<k>]`), split, task, scene_id, conversations
(list of {from, value}), answers (the row's references, at least the gpt turn), object_ids (int32), box_input
(6 float32 or null), question_type (null where the benchmark has none).

A `vision_only` row (`ross3d prep vision-only`, docs/vision-only.md) is a training scene without a conversation:
sample_id `vision_only/train/<scene_id>`, split `train`, every list column empty and the nullable columns null.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ross3d.errors import InputError
from ross3d.safe_names import check_scene_id

VISION_ONLY = "vision_only"  # a scene with no conversation: only the reconstruction losses train on it
TASKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer", VISION_ONLY)

SAMPLES_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("scene_id", pa.string(), nullable=False),
    pa.field("conversations", pa.list_(pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])),
             nullable=False),
    pa.field("answers", pa.list_(pa.string()), nullable=False),
    pa.field("object_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("box_input", pa.list_(pa.float32())),
    pa.field("question_type", pa.string()),
])


@dataclass
class Sample:
    """One row of samples.parquet; `conversations` holds (role, text) pairs, role "human" or "gpt"."""

    sample_id: str
    split: str
    task: str
    scene_id: str
    conversations: list[tuple[str, str]]
    answers: list[str]
    object_ids: list[int] = field(default_factory=list)
    box_input: list[float] | None = None
    question_type: str | None = None

    @property
    def prompt(self) -> str:
        """The first human turn."""
        return next(text for role, text in self.conversations if role == "human")


def make_sample_id(task: str, split: str, original_id: object, k: int | None = None) -> str:
    base = f"{task}/{split}/{original_id}"
    return base if k is None else f"{base}/{k}"


def vision_only_sample(scene_id: str) -> Sample:
    """The vision-only training row of a scene (its id is unique per scene, so appending twice adds nothing)."""
    return Sample(make_sample_id(VISION_ONLY, "train", scene_id), "train", VISION_ONLY, scene_id, [], [])


def held_out_scenes(rows: Iterable[Sample]) -> set[str]:
    """Scenes whose samples all lie outside the train split (a vision-only row of one would train on it)."""
    train, other = set(), set()
    for r in rows:
        (train if r.split == "train" else other).add(r.scene_id)
    return other - train


def samples_table(samples: Iterable[Sample]) -> pa.Table:
    rows = [
        {
            "sample_id": s.sample_id, "split": s.split, "task": s.task, "scene_id": s.scene_id,
            "conversations": [{"from": role, "value": text} for role, text in s.conversations],
            "answers": list(s.answers), "object_ids": [int(i) for i in s.object_ids],
            "box_input": None if s.box_input is None else [float(v) for v in s.box_input],
            "question_type": s.question_type,
        }
        for s in samples
    ]
    return pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA)


def write_samples(path: str | Path, samples: Iterable[Sample]) -> int:
    """Write samples atomically (temp file + rename); sample_ids must be unique. Returns the row count."""
    path = Path(path)
    table = samples_table(samples)
    ids = table.column("sample_id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(path, f"duplicate sample_id {dup!r}")
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows


def read_checked_table(path: str | Path, schema: pa.Schema, missing_hint: str) -> pa.Table:
    """A PREP_DIR parquet table, refused with a one-line error when absent or not of the contract's schema."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"not found ({missing_hint})")
    table = pq.read_table(path)
    if not table.schema.equals(schema):
        raise InputError(path, f"schema differs from {path.name} v1: {table.schema}")
    return table


def read_samples_table(path: str | Path) -> pa.Table:
    """The table as written, checked against SAMPLES_SCHEMA."""
    return read_checked_table(path, SAMPLES_SCHEMA, "run `ross3d prep qa` first")


def read_samples(path: str | Path, tasks: Iterable[str] | None = None,
                 splits: Iterable[str] | None = None) -> list[Sample]:
    """Rows as Sample objects, optionally restricted to some tasks and splits (file order kept)."""
    tasks = None if tasks is None else set(tasks)
    splits = None if splits is None else set(splits)
    out = []
    for row in read_samples_table(path).to_pylist():
        check_scene_id(row["scene_id"], f"{path}: sample {row['sample_id']}")
        if (tasks is not None and row["task"] not in tasks) or (splits is not None and row["split"] not in splits):
            continue
        row["conversations"] = [(turn["from"], turn["value"]) for turn in row["conversations"]]
        out.append(Sample(**row))
    return out
