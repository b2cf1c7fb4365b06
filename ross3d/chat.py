"""Qwen chat-format encoding of one sample, with the original's label masking; shared by training and evaluation.

Format (docs/original-model.md 7.3): `<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n`, then per turn
`<|im_start|>{role}\\n{content}<|im_end|>\\n`. The `<image>` marker becomes one placeholder id that the model replaces
by the visual tokens. Labels: system and user turns -100, the assistant turn fully supervised (including its
`<|im_start|>assistant\\n` header); then every "\\n", `<|im_start|>` and `<|im_end|>` token is supervised everywhere,
the LLaVA-NeXT convention the original trains with. Evaluation prompts end after `<|im_start|>assistant\\n`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IMAGE_MARKER = "<image>"
IGNORE_INDEX = -100
SYSTEM_PROMPT = "You are a helpful assistant."
SPATIAL_INSTRUCTION = (
    "The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the video "
    "and answer the following questions."
)
ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def add_spatial_instruction(text: str) -> str:
    """The training-time rewrite of the first user turn: `<image>\\n{instruction}\\n{text without <image>}`."""
    return f"{IMAGE_MARKER}\n{SPATIAL_INSTRUCTION}\n{text.replace(IMAGE_MARKER, '').lstrip()}"


class ChatEncoder:
    """Encodes conversations for one tokenizer; `image_token_id` is the placeholder the model splices at."""

    def __init__(self, tokenizer, image_token_id: int):
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self._always_supervised = {
            tokenizer.convert_tokens_to_ids("<|im_start|>"),
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            *self._ids("\n"),
        }

    def _ids(self, text: str) -> list[int]:
        """Token ids of text; `<image>` markers become the placeholder id."""
        ids: list[int] = []
        for k, piece in enumerate(text.split(IMAGE_MARKER)):
            if k:
                ids.append(self.image_token_id)
            if piece:
                ids.extend(self.tokenizer.encode(piece, add_special_tokens=False))
        return ids

    def _turn(self, role: str, content: str) -> list[int]:
        return self._ids(f"<|im_start|>{role}\n{content}<|im_end|>\n")

    def encode(self, conversations: Sequence[dict], spatial_instruction: bool = False) -> Encoded:
        """A full training sample: input ids and labels of the same length."""
        input_ids = self._turn("system", SYSTEM_PROMPT)
        labels = [IGNORE_INDEX] * len(input_ids)
        for k, turn in enumerate(conversations):
            role = ROLES[turn["from"]]
            text = turn["value"]
            if k == 0 and spatial_instruction:
                text = add_spatial_instruction(text)
            ids = self._turn(role, text)
            input_ids += ids
            labels += ids if role == "assistant" else [IGNORE_INDEX] * len(ids)
        labels = [t if (lab == IGNORE_INDEX and t in self._always_supervised) else lab
                  for t, lab in zip(input_ids, labels)]
        return Encoded(input_ids, labels)

    def encode_prompt(self, question: str, spatial_instruction: bool = False) -> list[int]:
        """The generation prompt: system + user turn + `<|im_start|>assistant\\n`."""
        if spatial_instruction:
            question = add_spatial_instruction(question)
        return self._turn("system", SYSTEM_PROMPT) + self._turn("user", question) + self._ids(
            "<|im_start|>assistant\n")
