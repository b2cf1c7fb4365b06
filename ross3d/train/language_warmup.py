"""Language warm-up of a fresh language model: next-token prediction on the run's training conversations as plain
text (the `<image>` placeholder dropped), before the first Ross3D step.

A released LLaVA-Video brings a language model that already reads its prompt; a tiny one trained from scratch
(the demo's) does not, and its `<ground>` state stays an average of the visual tokens for hundreds of grounding
steps (docs/demo.md, Grounding). The warm-up is a stand-in for that language pretraining: on the training split's
texts only, with the LM alone (no visual tokens, no denoiser, no grounding head). Each step draws `batch` texts
without replacement from a generator seeded by the run's seed, so every rank warms up to the same weights.
With `ground_labels`, each grounding text names the categories of its `<ground>` queries' positives after
the `<ground>` token (`warm_up_texts`), so the `<ground>` state learns to gather the referring expression.
OUTPUT_DIR/language_warmup.jsonl has the loss of every step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ross3d.batches import GROUNDING_TASKS, TextSample, pad_right
from ross3d.cache.inputs import read_prep_table

log = logging.getLogger(__name__)
LOG_FILE = "language_warmup.jsonl"
REPORT_EVERY = 50  # steps between console lines


def text_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels) of texts; labels are -100 at the padding."""
    width = max(len(ids) for ids in token_ids)
    ids = pad_right([np.asarray(text, np.int64) for text in token_ids], width, pad_id)
    mask = pad_right([np.ones(len(text), np.int64) for text in token_ids], width, 0)
    return ids, mask, ids.masked_fill(mask == 0, -100)


def plain_texts(samples, image_token_id: int) -> list[list[int]]:
    """Each sample's token ids without the image placeholder (the text an LM alone can read)."""
    return [[int(t) for t in s.input_ids if t != image_token_id] for s in samples]


EMPTY_TARGET = "nothing"  # the category text of a `<ground>` query without positives


def name_referents(text: list[int], ground_token_id: int, targets: Sequence[Sequence[int]],
                   category_ids: Callable[[Sequence[int]], list[int]]) -> list[int]:
    """`text` with `category_ids(positives)` inserted after its k-th `<ground>` token, for the k-th of `targets`."""
    grounds = [i for i, t in enumerate(text) if t == ground_token_id]
    if len(grounds) != len(targets):
        raise ValueError(f"{len(grounds)} <ground> tokens for {len(targets)} target sets")
    out, start = [], 0
    for i, positives in zip(grounds, targets):
        out += text[start:i + 1] + category_ids(positives)
        start = i + 1
    return out + text[start:]


def referent_names(labels: dict[tuple[str, int], str], scene_id: str, positives: Sequence[int]) -> str:
    """The categories of a query's positives in first-seen order (`EMPTY_TARGET` for none), space separated."""
    return " ".join(dict.fromkeys(labels[scene_id, i] for i in positives)) or EMPTY_TARGET


def object_labels(prep_dir: str | Path) -> dict[tuple[str, int], str]:
    """(scene_id, object_id) -> category of PREP_DIR/objects.parquet."""
    table = read_prep_table(Path(prep_dir) / "objects.parquet", ["scene_id", "object_id", "label"])
    columns = (table.column(c).to_pylist() for c in table.column_names)
    return {(sid, int(oid)): label for sid, oid, label in zip(*columns)}


def warm_up_texts(samples: Sequence[TextSample], image_token_id: int, ground_token_id: int,
                  labels: dict[tuple[str, int], str] | None, tokenizer) -> list[list[int]]:
    """`plain_texts`; with `labels`, each grounding text names its referents after each `<ground>`."""
    texts = plain_texts(samples, image_token_id)
    if labels is None:
        return texts
    return [name_referents(text, ground_token_id, s.targets, lambda positives: tokenizer(
                " " + referent_names(labels, s.scene_id, positives), add_special_tokens=False).input_ids)
            if s.task in GROUNDING_TASKS else text for text, s in zip(texts, samples)]


def warm_up_language(llm: torch.nn.Module, texts: list[list[int]], pad_id: int, steps: int, batch: int, lr: float,
                     grad_clip: float, seed: int, device: torch.device, output_dir: Path | None) -> list[float]:
    """Train `llm` (a transformers causal LM) for `steps` AdamW steps at a constant `lr`; returns the step losses.
    The loss of each step is appended to OUTPUT_DIR/language_warmup.jsonl when `output_dir` is given."""
    rng = np.random.default_rng(seed)
    params = [p for p in llm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    size = min(batch, len(texts))
    losses: list[float] = []
    records = (output_dir / LOG_FILE).open("w") if output_dir is not None else None
    llm.train()
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            ids, mask, labels = (t.to(device) for t in text_batch([texts[i] for i in rng.choice(len(texts), size,
                                                                                               replace=False)], pad_id))
            loss = llm(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if records is not None:
                records.write(json.dumps({"step": step, "lm_loss": losses[-1]}) + "\n")
            if step % REPORT_EVERY == 0 or step == steps:
                rate = step / (time.perf_counter() - start)
                log.info("language warm-up step %d/%d: lm loss %.4f (mean of the last %d), %.1f steps/s", step,
                         steps, float(np.mean(losses[-REPORT_EVERY:])), min(REPORT_EVERY, step), rate)
    finally:
        if records is not None:
            records.close()
    return losses
