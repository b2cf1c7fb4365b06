"""Qwen chat-format encoding of one sample, token for token as the original's training and evaluation build it.

Training (docs/original-model.md 7.3): `<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n`, then per turn
`<|im_start|>{role}\\n{content}<|im_end|>\\n`, each turn tokenised as one text in which `<image>` is a special token
(one placeholder id that the model replaces by the visual tokens). With the spatial instruction the first user turn
is rewritten to `<image>\\n{instruction}\\n{turn without <image>}`; the rest keeps its leading space
(`"\\n What"`). Labels: system and user turns -100, the assistant turn fully supervised (including its
`<|im_start|>assistant\\n` header); then every "\\n", `<|im_start|>` and `<|im_end|>` token is supervised everywhere,
the LLaVA-NeXT convention the original trains with.

Evaluation (docs/model.md, differences from the original): the original's evaluation scripts tokenise the pieces
separately, `<|im_start|>` + "system" + "\\n" + system message + `<|im_end|>` + "\\n", then `<|im_start|>user` +
"\\n" + the first turn with a "\\n" token inserted after the image placeholder + `<|im_end|>` + "\\n", then
`<|im_start|>assistant` + "\\n" (+ the teacher-forced answer, `<|im_end|>`, "\\n" for grounding). They never add the
spatial instruction; when asked to, the user turn is the training one (the inserted "\\n" is the rewrite's first).
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
    """The training-time rewrite of the first user turn: `<image>\\n{instruction}\\n{text without <image>}` (what
    follows the marker is kept as is, leading space included)."""
    return f"{IMAGE_MARKER}\n{SPATIAL_INSTRUCTION}\n{text.replace(IMAGE_MARKER, '')}"


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

    def _labelled(self, input_ids: list[int], supervised: list[bool]) -> Encoded:
        """Labels: the supervised positions and every always-supervised token; -100 elsewhere."""
        labels = [t if (keep or t in self._always_supervised) else IGNORE_INDEX
                  for t, keep in zip(input_ids, supervised)]
        return Encoded(input_ids, labels)

    def encode(self, conversations: Sequence[dict], spatial_instruction: bool = False) -> Encoded:
        """A full training sample: input ids and labels of the same length."""
        input_ids = self._turn("system", SYSTEM_PROMPT)
        supervised = [False] * len(input_ids)
        for k, turn in enumerate(conversations):
            role = ROLES[turn["from"]]
            text = turn["value"]
            if k == 0 and spatial_instruction:
                text = add_spatial_instruction(text)
            ids = self._turn(role, text)
            input_ids += ids
            supervised += [role == "assistant"] * len(ids)
        return self._labelled(input_ids, supervised)

    def encode_vision_only(self, spatial_instruction: bool = False) -> Encoded:
        """A vision-only training sample (docs/vision-only.md): the system turn and a user turn holding only the
        image (and the spatial sentence when the run uses it), no assistant turn, and nothing supervised."""
        input_ids = self.encode([{"from": "human", "value": IMAGE_MARKER}], spatial_instruction).input_ids
        return Encoded(input_ids, [IGNORE_INDEX] * len(input_ids))

    def _eval_user(self, text: str, spatial_instruction: bool) -> list[int]:
        """The evaluation user turn: pieces around `<image>` tokenised apart, a "\\n" token after each image."""
        if spatial_instruction:
            text = f"{IMAGE_MARKER}{SPATIAL_INSTRUCTION}\n{text.replace(IMAGE_MARKER, '')}"
        nl = self._ids("\n")
        ids = self._ids("<|im_start|>user") + nl
        for k, piece in enumerate(text.split(IMAGE_MARKER)):
            if k:
                ids += [self.image_token_id] + nl
            ids += self._ids(piece)
        return ids + self._ids("<|im_end|>") + nl

    def encode_eval(self, conversations: Sequence[dict], spatial_instruction: bool = False) -> Encoded:
        """The original evaluation's sequence: system, the first (user) turn, and the assistant turn, teacher-forced
        when it has a value (grounding: `<ground>`) or open (`<|im_start|>assistant\\n`, generation) without one.
        Labels supervise the assistant's answer (and the always-supervised tokens)."""
        nl = self._ids("\n")
        system = (self._ids("<|im_start|>") + self._ids("system") + nl + self._ids(SYSTEM_PROMPT)
                  + self._ids("<|im_end|>") + nl)
        user = self._eval_user(conversations[0]["value"], spatial_instruction)
        header = self._ids("<|im_start|>assistant") + nl
        answer = conversations[1].get("value") if len(conversations) > 1 else None
        body = [] if answer is None else self._ids(answer) + self._ids("<|im_end|>") + nl
        input_ids = system + user + header + body
        return self._labelled(input_ids, [False] * (len(input_ids) - len(body)) + [True] * len(body))

    def encode_prompt(self, question: str, spatial_instruction: bool = False) -> list[int]:
        """The generation prompt of the original evaluation, ending with `<|im_start|>assistant\\n`."""
        return self.encode_eval([{"from": "human", "value": question}], spatial_instruction).input_ids
