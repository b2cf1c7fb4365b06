"""ScanQA (`ScanQA_v1.0_{train,val}.json`): train gives one row per answer, val one row with the first answer
as the gpt turn and all answers as references. ScanQA has no question type."""

from __future__ import annotations

from ross3d.prep.qa.native import convert_records, get, get_list
from ross3d.prep.qa.prompts import scanqa_prompt
from ross3d.prep.qa.report import QaReport
from ross3d.prep.qa.scene_index import SceneIndex
from ross3d.prep.qa.schema import Sample, make_sample_id

SPLITS = ("train", "val")


def file_name(split: str) -> str:
    return f"ScanQA_v1.0_{split}.json"


def convert(records: list, split: str, source: str, scenes: SceneIndex, report: QaReport) -> list[Sample]:
    def make(index: int, record: object) -> list[Sample]:
        qid = get(record, "question_id", str)
        scene_id = get(record, "scene_id", str)
        question = get(record, "question", str)
        answers = get_list(record, "answers", str, allow_empty=False)
        object_ids = get_list(record, "object_ids", int)
        scenes.require_scene(scene_id)
        prompt = scanqa_prompt(question)
        if split == "train":
            return [Sample(make_sample_id("scanqa", split, qid, k), split, "scanqa", scene_id,
                           [("human", prompt), ("gpt", answer)], [answer], object_ids)
                    for k, answer in enumerate(answers)]
        return [Sample(make_sample_id("scanqa", split, qid), split, "scanqa", scene_id,
                       [("human", prompt), ("gpt", answers[0])], list(answers), object_ids)]

    return convert_records(records, source, report, "question_id", make)
