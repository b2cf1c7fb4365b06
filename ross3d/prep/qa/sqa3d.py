"""SQA3D (`balanced/v1_balanced_{questions,sqa_annotations}_{split}_scannetv2.json`): questions joined with
their annotations by question_id. Train gives one row per situation (the alternative situations, then the
situation, as the original); val and test one row. question_type comes from the question's first word."""

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
    """The question's first word, lower-cased, if it is one of the five types; else "others"."""
    words = question.split()
    first = words[0].lower() if words else ""
    return first if first in QUESTION_TYPES else "others"


def _answers_by_question(annotations: list, source: str, report: QaReport) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}

    def read(index: int, record: object) -> list:
        qid = get(record, "question_id", int)
        answers = [get(a, "answer", str) for a in get_list(record, "answers", dict, allow_empty=False)]
        out[qid] = answers
        return []

    convert_records(annotations, source, report, "question_id", read)
    return out


def convert(questions: list, annotations: list, split: str, sources: tuple[str, str], scenes: SceneIndex,
            report: QaReport) -> list[Sample]:
    answers_of = _answers_by_question(annotations, sources[1], report)

    def make(index: int, record: object) -> list[Sample]:
        qid = get(record, "question_id", int)
        scene_id = get(record, "scene_id", str)
        question = get(record, "question", str)
        situation = get(record, "situation", str)
        alternatives = get_list(record, "alternative_situation", str) if split == "train" else []
        if qid not in answers_of:
            raise RecordError("question without annotation")
        scenes.require_scene(scene_id)
        answers, qtype = answers_of[qid], question_type(question)

        def row(sit: str, k: int | None) -> Sample:
            return Sample(make_sample_id("sqa3d", split, qid, k), split, "sqa3d", scene_id,
                          [("human", sqa3d_prompt(sit, question)), ("gpt", answers[0])], list(answers), [], None,
                          qtype)

        if split == "train":
            return [row(sit, k) for k, sit in enumerate([*alternatives, situation])]
        return [row(situation, None)]

    samples = convert_records(questions, sources[0], report, "question_id", make)
    asked = {r.get("question_id") for r in questions if isinstance(r, dict)}
    for qid in answers_of.keys() - asked:
        report.add_problem(sources[1], "annotation without question", qid)
    return samples
