"""Tokenizers: `load_tokenizer(folder)`, the one loader every stage uses (convert, train, eval, visualize), and a
small local byte-level BPE with the Qwen chat special tokens for tests and the demo.

`load_tokenizer` reads every layout the releases use: a `tokenizer.json` (what ross3d writes), or the slow-tokenizer
files alone (`vocab.json` + `merges.txt` + `added_tokens.json` + a `tokenizer_config.json` naming `Qwen2Tokenizer`,
as LLaVA-Video-7B-Qwen2 ships), which `PreTrainedTokenizerFast.from_pretrained` cannot load.

Real runs load the checkpoint's Qwen2 tokenizer; nothing can be downloaded here, so tiny models use `build_tokenizer`:
a `tokenizers` BPE trained on the given texts, wrapped as a transformers `PreTrainedTokenizerFast` with
`<|endoftext|>` (pad and eos), `<|im_start|>` and `<|im_end|>`, so `ross3d.chat.ChatEncoder` works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ross3d.errors import InputError

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# tokenizer_config.json class names that say nothing about the vocabulary format (AutoTokenizer resolves them)
GENERIC_TOKENIZER_CLASSES = ("", "PreTrainedTokenizerFast", "PreTrainedTokenizer", "TokenizersBackend", "PythonBackend")


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in a model folder, fast (tokenizer.json) or slow-file (vocab.json + merges.txt) layout.

    The class named in tokenizer_config.json (its fast variant when there is one) is used directly: with the
    LLaVA-NeXT config.json beside it (`model_type: llava`), transformers 5's AutoTokenizer picks a generic backend
    that cannot read the slow files. A folder with a generic class and a tokenizer.json (what ross3d writes) is read
    by PreTrainedTokenizerFast itself, whatever config.json lies beside it (`AutoTokenizer.from_pretrained(DIR)` reads
    it too, without a warning, once `import ross3d` registered `model_type: ross3d`). Other folders go through
    AutoTokenizer."""
    import json

    import transformers

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise InputError(folder, "no tokenizer (tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json)")
    try:
        named = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class") or ""
    except (OSError, ValueError):
        named = ""
    cls = None
    if named in GENERIC_TOKENIZER_CLASSES and (folder / "tokenizer.json").is_file():
        cls = transformers.PreTrainedTokenizerFast
    elif named not in GENERIC_TOKENIZER_CLASSES:
        base = named.removesuffix("Fast")
        cls = getattr(transformers, base + "Fast", None) or getattr(transformers, base, None)
    try:
        return (cls or transformers.AutoTokenizer).from_pretrained(str(folder))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise InputError(folder, f"cannot load its tokenizer: {err}") from None


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
