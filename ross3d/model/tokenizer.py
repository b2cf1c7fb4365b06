"""A small local byte-level BPE tokenizer with the Qwen chat special tokens, for tests and the demo.

Real runs load the checkpoint's Qwen2 tokenizer; nothing can be downloaded here, so tiny models use this one: a
`tokenizers` BPE trained on the given texts, wrapped as a transformers `PreTrainedTokenizerFast` with
`<|endoftext|>` (pad and eos), `<|im_start|>` and `<|im_end|>`, so `ross3d.chat.ChatEncoder` works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def build_tokenizer(texts: Iterable[str], vocab_size: int = 400, save_dir: str | Path | None = None):
    """Train a byte-level BPE of at most `vocab_size` ids (specials included) on `texts`; optionally save it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(list(texts), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok
