"""Chat encoding: the exact Qwen layout, the image placeholder, and the original's label masking."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ross3d.chat import IGNORE_INDEX, SPATIAL_INSTRUCTION, ChatEncoder

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
IMAGE_ID = 10_000


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["system user assistant You are a helpful assistant.", "What is on the table? a red chair\n",
              SPATIAL_INSTRUCTION]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def test_layout_and_labels(tokenizer):
    enc = ChatEncoder(tokenizer, IMAGE_ID)
    conv = [{"from": "human", "value": "<image> What is on the table?"}, {"from": "gpt", "value": "a red chair"}]
    out = enc.encode(conv)
    assert len(out.input_ids) == len(out.labels)
    assert out.input_ids.count(IMAGE_ID) == 1
    k = out.input_ids.index(IMAGE_ID)
    text_before = tokenizer.decode(out.input_ids[:k])
    assert text_before == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    text_after = tokenizer.decode(out.input_ids[k + 1:])
    assert text_after == " What is on the table?<|im_end|>\n<|im_start|>assistant\na red chair<|im_end|>\n"
    # Supervised: the whole assistant turn, plus "\n", <|im_start|>, <|im_end|> everywhere; nothing else.
    start = len(out.input_ids) - len(tokenizer.encode("<|im_start|>assistant\na red chair<|im_end|>\n"))
    always = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")}
    always |= set(tokenizer.encode("\n"))
    for i, (tok_id, label) in enumerate(zip(out.input_ids, out.labels)):
        if i >= start or tok_id in always:
            assert label == tok_id, i
        else:
            assert label == IGNORE_INDEX, i


def test_spatial_instruction_and_prompt(tokenizer):
    enc = ChatEncoder(tokenizer, IMAGE_ID)
    conv = [{"from": "human", "value": "<image> What is on the table?"}, {"from": "gpt", "value": "a red chair"}]
    out = enc.encode(conv, spatial_instruction=True)
    k = out.input_ids.index(IMAGE_ID)
    after = tokenizer.decode(out.input_ids[k + 1:])
    assert after.startswith(f"\n{SPATIAL_INSTRUCTION}\n What is on the table?<|im_end|>")
    prompt = enc.encode_prompt("<image> What is on the table?", spatial_instruction=True)
    assert prompt == out.input_ids[: len(prompt)]
    assert tokenizer.decode(prompt[prompt.index(IMAGE_ID) + 1:]).endswith("<|im_start|>assistant\n")
    # the original's evaluation (no sentence) puts a "\n" after the image
    plain = tokenizer.decode(enc.encode_prompt("<image> What is on the table?")[prompt.index(IMAGE_ID) + 1:])
    assert plain == "\n What is on the table?<|im_end|>\n<|im_start|>assistant\n"


def test_packed_rows_are_one_multi_turn_conversation(tokenizer):
    """Two rows of a scene: one sample, the image once (before the first question), both answers supervised,
    and per-row targets in text order; the token layout is the hand-written two-turn conversation's."""
    from ross3d.batches import encode_row, encode_rows
    from ross3d.prep.qa.schema import Sample

    enc = ChatEncoder(tokenizer, IMAGE_ID)
    a = Sample("q/0", "train", "scanrefer", "s0", [("human", "<image>What is on the table?"), ("gpt", "a")], [], [3])
    b = Sample("q/1", "train", "scanrefer", "s0", [("human", "<image>What is red? "), ("gpt", "chair")], [], [1, 4])
    packed = encode_rows([a, b], enc, spatial_instruction=True)
    expected = enc.encode([{"from": "human", "value": "<image>What is on the table?"}, {"from": "gpt", "value": "a"},
                           {"from": "human", "value": "What is red?"}, {"from": "gpt", "value": "chair"}], True)
    assert packed.input_ids.tolist() == expected.input_ids and packed.labels.tolist() == expected.labels
    assert packed.input_ids.tolist().count(IMAGE_ID) == 1
    text = tokenizer.decode(packed.input_ids[packed.input_ids.tolist().index(IMAGE_ID) + 1:])
    assert text.endswith("<|im_start|>assistant\na<|im_end|>\n<|im_start|>user\nWhat is red?<|im_end|>\n"
                         "<|im_start|>assistant\nchair<|im_end|>\n")
    assert packed.targets == ((3,), (1, 4))
    single = encode_row(a, enc, spatial_instruction=True)
    assert single.targets == ((3,),) and packed.input_ids[:len(single.input_ids)].tolist() == single.input_ids.tolist()
    other = Sample("q/2", "train", "scanrefer", "s1", a.conversations, [], [3])
    with pytest.raises(ValueError, match="mixes scenes or tasks"):
        encode_rows([a, other], enc, False)
