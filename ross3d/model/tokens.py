"""The added vocabulary: `<ground>` and `<coord>` as special tokens whose new embedding rows (input and output)
start at the mean of the existing rows, also when the weights are ZeRO-3-partitioned.

Decision (docs/original-model.md 11, item 13 and 7.3): the original shrank the checkpoint's padded 152,064-row matrix to
len(tokenizer) and reused padded rows, with a mean-init that was a no-op under ZeRO-3. Here the matrix only grows
(never shrinks): new ids past the matrix extend it; new ids inside it (padded rows) are overwritten. The mean is
over the rows of the tokens that existed before (ids < len(tokenizer) before adding). Partitioned (ZeRO-3)
matrices are written inside the `gather` context the caller passes (the trainer's `ross3d.train.zero.
gathered_for_update`; this package never imports DeepSpeed); without one they are refused. Growing a partitioned
matrix is refused too (Qwen2's 152,064 rows already hold the new ids; otherwise add the tokens first).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ContextManager

import torch

from ross3d.errors import ConfigError

GROUND_TOKEN = "<ground>"
COORD_TOKEN = "<coord>"
ADDED_TOKENS = (GROUND_TOKEN, COORD_TOKEN)


Gather = Callable[[list[torch.nn.Parameter]], ContextManager]


def _rows(weight: torch.nn.Parameter) -> int:
    """Rows of an embedding matrix, also when ZeRO-3 has partitioned it (then `.shape` is empty)."""
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def add_tokens(tokenizer, llm, gather: Gather | None = None) -> dict[str, int]:
    """Add the Ross3D tokens to `tokenizer` and to `llm` (a transformers causal LM); returns {token: id}. `gather`
    gives write access to partitioned parameters (needed only when they are)."""
    if gather is None and hasattr(llm.get_input_embeddings().weight, "ds_id"):
        raise ConfigError("added tokens: the embedding is ZeRO-3-partitioned; pass the trainer's gather "
                          "(ross3d.train.zero.gathered_for_update)")
    n_before = len(tokenizer)
    tokenizer.add_tokens(list(ADDED_TOKENS), special_tokens=True)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ADDED_TOKENS}
    weight = llm.get_input_embeddings().weight
    if len(tokenizer) > _rows(weight):
        if hasattr(weight, "ds_id"):
            raise ConfigError(f"added tokens: {len(tokenizer)} ids do not fit the {_rows(weight)}-row "
                              "ZeRO-3-partitioned embedding; add the tokens before partitioning")
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    new = [i for i in ids.values() if i >= n_before]
    mats = [llm.get_input_embeddings().weight]
    out = llm.get_output_embeddings()
    if out is not None and out.weight is not mats[0]:
        mats.append(out.weight)
    with (gather or (lambda _: contextlib.nullcontext()))(mats), torch.no_grad():
        for w in mats:
            if new and w.numel():
                w[new] = w[:n_before].float().mean(0).to(w.dtype)
    return ids


def add_model_tokens(model, tokenizer, gather: Gather | None = None) -> dict[str, int]:
    """`add_tokens` for a Ross3D model: tokens the tokenizer lacks are added with mean-initialised rows, tokens it has
    keep their ids and rows; the ids and the vocabulary rows go into `model.config`. Returns {token: id}."""
    ids = add_tokens(tokenizer, model.llm, gather)
    model.config = model.config.replace(ground_token_id=ids[GROUND_TOKEN], coord_token_id=ids[COORD_TOKEN],
                                        vocab_size=_rows(model.llm.get_input_embeddings().weight))
    return ids
