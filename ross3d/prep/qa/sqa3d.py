"""SQA3D (`balanced/v1_balanced_{questions,sqa_annotations}_{split}_scannetv2.json`): questions joined with
their annotations by question_id. Train gives one row per situation (the alternative situations, then the
situation, as the original); val and test one row. Rows follow the annotation file's order; scene_id is the
annotation's. question_type comes from the start of the question."""

from __future__ import annotations

from ross3d.prep.qa.native import convert_records, get, get_list
from ross3d.prep.qa.prompts import sqa3d_prompt
from ross3d.prep.qa.report import QaReport, RecordError
from ross3d.prep.qa.scene_index import SceneIndex
from ross3d.prep.qa.schema import Sample, make_sample_id

SPLITS = ("train", "val", "test")
SUBDIRS = ("balanced",)
QUESTION_TYPES = ("what", "is", "how", "can", "which")


def file_names(split: str) -> tuple[str, str]:
    return (f"v1_balanced_questions_{split}_scannetv2.json", f"v1_balanced_sqa_annotations_{split}_scannetv2.json")


def question_type(question: str) -> str:
    """The original's rule: the left-stripped question, lower-cased, starts with one of the five type words
    (a prefix test, so "Isn't ..." is "is"); else "others"."""
    start = question.lstrip().lower()
    return next((t for t in QUESTION_TYPES if start.startswith(t)), "others")


def _questions_by_id(questions: list, source: str, report: QaReport) -> dict[int, dict]:
    out: dict[int, dict] = {}

    def read(index: int, record: object) -> list:
        out[get(record, "question_id", int)] = record
        return []

    convert_records(questions, source, report, "question_id", read)
    return out


def convert(questions: list, annotations: list, split: str, sources: tuple[str, str], scenes: SceneIndex,
            report: QaReport) -> list[Sample]:
    """One pass over the annotations (the original's order), each joined with its question."""
    question_of = _questions_by_id(questions, sources[0], report)

    def make(index: int, record: object) -> list[Sample]:
        qid = get(record, "question_id", int)
        answers = [get(a, "answer", str) for a in get_list(record, "answers", dict, allow_empty=False)]
        if qid not in question_of:
            raise RecordError("annotation without question")
        q = question_of[qid]
        scene_id = get(record, "scene_id", str)
        question, situation = get(q, "question", str), get(q, "situation", str)
        alternatives = get_list(q, "alternative_situation", str) if split == "train" else []
        scenes.require_scene(scene_id)
        qtype = question_type(question)

        def row(sit: str, k: int | None) -> Sample:
            return Sample(make_sample_id("sqa3d", split, qid, k), split, "sqa3d", scene_id,
                          [("human", sqa3d_prompt(sit, question)), ("gpt", answers[0])], list(answers), [], None,
                          qtype)

        if split == "train":
            return [row(sit, k) for k, sit in enumerate([*alternatives, situation])]
        return [row(situation, None)]

    samples = convert_records(annotations, sources[1], report, "question_id", make)
    answered = {r.get("question_id") for r in annotations if isinstance(r, dict)}
    for qid in question_of.keys() - answered:
        report.add_problem(sources[0], "question without annotation", qid)
    return samples
