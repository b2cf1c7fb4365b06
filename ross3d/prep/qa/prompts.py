"""The original prompts (docs/original-model.md 7.2, docs/original-data.md B.8), exactly, as functions."""

from __future__ import annotations

GROUND_ANSWER = "<ground>"
REFER_INSTRUCTION = "<image>Identify the object according to the following description.\n"
MULTI_SUFFIX = "\nThere may be no corresponding object, or there may be one or more objects."


def scanqa_prompt(question: str) -> str:
    return f"<image> {question} Answer the question simply."


def sqa3d_prompt(situation: str, question: str) -> str:
    return f"<image> {situation} {question} Answer the question using a single word or phrase."


def scan2cap_prompt() -> str:
    return "<image> Given an object located at <coord> , describe the object in detail."


def scanrefer_prompt(description: str) -> str:
    """`description` is already capitalised (native.capitalize, the original's `Desc`)."""
    return REFER_INSTRUCTION + description


def multi3drefer_prompt(description: str) -> str:
    return REFER_INSTRUCTION + description + MULTI_SUFFIX
