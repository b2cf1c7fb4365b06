"""What the model is fed, against sequences built by hand from the original's definitions (docs/model.md,
"Differences from the original"): the training and evaluation prompt tokens of every task with and without the
spatial instruction."""

from __future__ import annotations

import copy

import pytest

from ross3d.chat import ChatEncoder
from ross3d.model.tokenizer import build_tokenizer

IMAGE = -200  # the original's IMAGE_TOKEN_INDEX
SYSTEM = "You are a helpful assistant."
INSTRUCTION = ("The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the "
               "video and answer the following questions.")
REFER = "<image>Identify the object according to the following description.\nThis is a brown chair. It is near the desk."
# (first turn, answer) of every task, written out from the original's templates (data-and-eval-reference A, B.8)
TASKS = {
    "scanqa": ("<image> What is in the right corner of the room by the curtains? Answer the question simply.",
               "brown cabinet with tv sitting in it"),
    "sqa3d": ("<image> I am facing a chair, while having a couch on my left. What color is the table on my right? "
              "Answer the question using a single word or phrase.", "white"),
    "scan2cap": ("<image> Given an object located at <coord> , describe the object in detail.",
                 "this is a brown chair. it is near the desk."),
    "scanrefer": (REFER, "<ground>"),
    "multi3drefer": (REFER + "\nThere may be no corresponding object, or there may be one or more objects.",
                     "<ground>"),
}
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}")


@pytest.fixture(scope="module")
def tokenizer():
    texts = [SYSTEM, INSTRUCTION, "system user assistant", *[t for pair in TASKS.values() for t in pair]]
    tok = build_tokenizer(texts, vocab_size=500)
    tok.add_tokens(["<ground>", "<coord>"], special_tokens=True)
    return tok


def original_training(tokenizer, question: str, answer: str, spatial: bool) -> list[int]:
    """The original's training preprocessing: the spatial rewrite, then `apply_chat_template` per message with the
    chat template above on a copy of the tokenizer where `<image>` is a special token, whose id becomes -200."""
    if spatial:
        question = f"<image>\n{INSTRUCTION}\n{question.replace('<image>', '')}"
    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    ids = []
    for role, content in (("system", SYSTEM), ("user", question), ("assistant", answer)):
        ids += list(tok.apply_chat_template([{"role": role, "content": content}], tokenize=True, return_dict=False))
    image = tok.convert_tokens_to_ids("<image>")
    return [IMAGE if t == image else t for t in ids]


def original_eval(tokenizer, question: str, answer: str | None) -> list[int]:
    """The original's evaluation preprocessing: every piece tokenised on its own, a "\\n" after the image."""
    def tok(text):
        return tokenizer(text).input_ids

    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    nl = tok("\n")
    ids = [im_start] + tok("system") + nl + tok(SYSTEM) + [im_end] + nl
    ids += tok("<|im_start|>user") + nl
    before, after = question.split("<image>")
    ids += tok(before) + [IMAGE] + nl + tok(after) + [im_end] + nl
    ids += tok("<|im_start|>assistant") + nl
    if answer is not None:
        ids += tok(answer) + [im_end] + nl
    return ids


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("spatial", [False, True])
def test_training_tokens_equal_the_original(tokenizer, task, spatial):
    question, answer = TASKS[task]
    enc = ChatEncoder(tokenizer, IMAGE).encode([{"from": "human", "value": question},
                                                {"from": "gpt", "value": answer}], spatial)
    assert enc.input_ids == original_training(tokenizer, question, answer, spatial)
    if spatial and not question.startswith("<image>Identify"):  # the space after the sentence's "\n" is kept
        after = tokenizer.decode(enc.input_ids[enc.input_ids.index(IMAGE) + 1:])
        assert after.startswith(f"\n{INSTRUCTION}\n {question[len('<image> '):][:20]}")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_eval_tokens_equal_the_original(tokenizer, task):
    question, answer = TASKS[task]
    encoder = ChatEncoder(tokenizer, IMAGE)
    if answer == "<ground>":  # teacher-forced grounding
        got = encoder.encode_eval([{"from": "human", "value": question}, {"from": "gpt", "value": answer}]).input_ids
        assert got == original_eval(tokenizer, question, answer)
    else:
        got = encoder.encode_prompt(question)
        assert got == original_eval(tokenizer, question, None)
    assert got[got.index(IMAGE) + 1] == tokenizer("\n").input_ids[0]  # the "\n" the original inserts


@pytest.mark.parametrize("task", sorted(TASKS))
def test_eval_with_the_spatial_instruction_is_the_training_prompt(tokenizer, task):
    """The original's evaluation never adds the sentence; asked for, the prompt is the training sequence up to the
    answer (the eval "\\n" after the image is the rewrite's first)."""
    question, answer = TASKS[task]
    train = original_training(tokenizer, question, answer, spatial=True)
    header = tokenizer("<|im_start|>assistant\n").input_ids
    cut = next(i for i in range(len(train)) if train[i:i + len(header)] == header) + len(header)
    encoder = ChatEncoder(tokenizer, IMAGE)
    if answer == "<ground>":
        got = encoder.encode_eval([{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                                  spatial_instruction=True).input_ids
        assert got == train
    else:
        assert encoder.encode_prompt(question, spatial_instruction=True) == train[:cut]
