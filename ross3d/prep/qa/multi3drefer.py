"""Multi3DRefer (`multi3drefer_{train,val}.json`): one row per description with its (possibly empty) list of
target object ids; question_type is the record's eval_type, one of the five types of the benchmark."""

from __future__ import annotations

from ross3d.prep.qa.native import capitalize, convert_records, get, get_list
from ross3d.prep.qa.prompts import GROUND_ANSWER, multi3drefer_prompt
from ross3d.prep.qa.report import QaReport, RecordError
from ross3d.prep.qa.scene_index import SceneIndex
from ross3d.prep.qa.schema import Sample, make_sample_id

SPLITS = ("train", "val")
QUESTION_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


def file_name(split: str) -> str:
    return f"multi3drefer_{split}.json"


def convert(records: list, split: str, source: str, scenes: SceneIndex, report: QaReport) -> list[Sample]:
    def make(index: int, record: object) -> list[Sample]:
        scene_id = get(record, "scene_id", str)
        description = get(record, "description", str)
        object_ids = get_list(record, "object_ids", int)
        eval_type = get(record, "eval_type", str)
        if eval_type not in QUESTION_TYPES:
            raise RecordError("unknown eval_type")
        scenes.require_scene(scene_id)
        for oid in object_ids:
            scenes.box(scene_id, oid)
        return [Sample(make_sample_id("multi3drefer", split, index), split, "multi3drefer", scene_id,
                       [("human", multi3drefer_prompt(capitalize(description))), ("gpt", GROUND_ANSWER)],
                       [GROUND_ANSWER], object_ids, None, eval_type)]

    return convert_records(records, source, report, None, make)
