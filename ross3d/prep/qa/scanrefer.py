"""ScanRefer (`ScanRefer_filtered_{train,val}.json`) and Scan2Cap, which is built from the same files.

ScanRefer: one grounding row per description, question_type unique/multiple (labels.py), the input file is
never rewritten. Scan2Cap train: one row per description, box_input = the GT box. Scan2Cap val: one row per
(scene, object_id, object_name), id = its first record's index, with all its descriptions as answers; box_input = the best proposal (IoU >= 0.5
among the first 50) when proposals are given, null when none qualifies, else the GT box."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ross3d.prep.qa.labels import unique_multiple
from ross3d.prep.qa.native import capitalize, convert_records, get, get_int
from ross3d.prep.qa.proposals import match_proposal
from ross3d.prep.qa.prompts import GROUND_ANSWER, scan2cap_prompt, scanrefer_prompt
from ross3d.prep.qa.report import QaReport, RecordError
from ross3d.prep.qa.scene_index import SceneIndex
from ross3d.prep.qa.schema import Sample, make_sample_id

SPLITS = ("train", "val")


def file_name(split: str) -> str:
    return f"ScanRefer_filtered_{split}.json"


@dataclass(frozen=True)
class ReferRecord:
    """One valid ScanRefer description (index = its position in the file, the original's id)."""

    index: int
    scene_id: str
    object_id: int
    object_name: str
    description: str
    box: np.ndarray
    eval_type: str


def parse(records: list, source: str, scenes: SceneIndex, label_map: dict[str, int],
          report: QaReport) -> list[ReferRecord]:
    """Valid records with their GT box and unique/multiple type; bad ones are counted in the report."""
    keys, indices = [], []
    for index, record in enumerate(records):
        try:
            keys.append((get(record, "scene_id", str), get_int(record, "object_id"), get(record, "object_name", str)))
            indices.append(index)
        except RecordError:  # counted below, when the record is converted
            continue
    eval_type_of = dict(zip(indices, unique_multiple(keys, label_map)))

    def make(index: int, record: object) -> list:
        scene_id, object_id = get(record, "scene_id", str), get_int(record, "object_id")
        name, description = get(record, "object_name", str), get(record, "description", str)
        scenes.require_scene(scene_id)
        box = scenes.box(scene_id, object_id)
        return [ReferRecord(index, scene_id, object_id, name, description, box, eval_type_of[index])]

    return convert_records(records, source, report, None, make)


def scanrefer_samples(refs: list[ReferRecord], split: str) -> list[Sample]:
    return [Sample(make_sample_id("scanrefer", split, r.index), split, "scanrefer", r.scene_id,
                   [("human", scanrefer_prompt(capitalize(r.description))), ("gpt", GROUND_ANSWER)],
                   [GROUND_ANSWER], [r.object_id], None, r.eval_type) for r in refs]


def _box_list(box: np.ndarray | None) -> list[float] | None:
    return None if box is None else [float(v) for v in box]


def scan2cap_samples(refs: list[ReferRecord], split: str, proposals: dict[str, np.ndarray] | None,
                     report: QaReport) -> list[Sample]:
    prompt = scan2cap_prompt()
    if split == "train":
        return [Sample(make_sample_id("scan2cap", split, r.index), split, "scan2cap", r.scene_id,
                       [("human", prompt), ("gpt", capitalize(r.description))],
                       [capitalize(r.description)], [r.object_id], _box_list(r.box), r.eval_type)
                for r in refs]
    groups: dict[tuple[str, int, str], list[ReferRecord]] = {}
    for r in refs:
        groups.setdefault((r.scene_id, r.object_id, r.object_name), []).append(r)
    out = []
    for (scene_id, object_id, name), group in groups.items():
        first = group[0]
        if proposals is None:
            box = first.box
        else:
            box = match_proposal(first.box, proposals.get(scene_id))
            report.unmatched[split] += box is None
        out.append(Sample(make_sample_id("scan2cap", split, first.index), split, "scan2cap",
                          scene_id, [("human", prompt), ("gpt", capitalize(first.description))],
                          [r.description for r in group], [object_id], _box_list(box), first.eval_type))
    return out
