"""LoRA on the language model through peft (`model.lora`), and its export.

`add_lora` injects LoRA into Qwen2's projections (`targets`) of `model.llm` in place, so the model stays a Ross3D
for DeepSpeed, checkpoints and resume; the base weights of the LLM are frozen. The rows of `<ground>` and `<coord>`
in the input embedding and, when untied, in `lm_head` train through peft's trainable tokens (a delta on those rows
only; the rest of both matrices is frozen). The other parts train fully or not as `model.train_parts` says
(ross3d.train.parts).

At the end of a run `finish_lora` writes the adapter in peft's format when asked (`export: adapter | both`) and
merges the adapter into the weights in place, so the existing export writes a plain Ross3D folder that eval,
visualize and `model.init` load like any other. The adapter folder holds peft's `adapter_config.json` and
`adapter_model.safetensors` (LoRA and token rows, for `PeftModel.from_pretrained(model.llm, FOLDER)`), the
parts outside the LLM that trained (`ross3d_parts.safetensors`, Ross3D state-dict names) and the tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ross3d.train.config import LoraOptions

ADAPTER_DIR = "adapter"
PARTS_FILE = "ross3d_parts.safetensors"


def lora_config(model, options: LoraOptions):
    """peft's LoraConfig for `model.llm`: the target projections of every decoder layer and the token rows."""
    from peft import LoraConfig

    ids = [model.config.ground_token_id, model.config.coord_token_id]
    tokens = {"embed_tokens": ids} if model.config.tie_word_embeddings else {"embed_tokens": ids, "lm_head": ids}
    return LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout, bias="none",
                      target_modules=rf"model\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(options.targets)})",
                      trainable_token_indices=tokens, task_type="CAUSAL_LM")


def add_lora(model, options: LoraOptions, seed: int, base: str | None = None):
    """Inject LoRA into `model.llm` in place (adapter init drawn from `seed`); returns peft's wrapper of the LLM."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    adapter = get_peft_model(model.llm, lora_config(model, options))
    adapter.peft_config["default"].base_model_name_or_path = base
    return adapter


def finish_lora(model, adapter, tokenizer, checkpoints: Path, export: str, parts: list[str],
                is_main: bool) -> Path | None:
    """Write CHECKPOINTS/adapter (export adapter | both; main rank) and merge the adapter into `model` in place;
    returns the adapter folder, or None when none was asked for."""
    folder = checkpoints / ADAPTER_DIR if export != "merged" else None
    if folder is not None and is_main:
        save_adapter(model, adapter, tokenizer, folder, parts)
    adapter.merge_and_unload(progressbar=False)
    return folder


def save_adapter(model, adapter, tokenizer, folder: Path, parts: list[str]) -> Path:
    """peft's adapter files, the trained parts outside the LLM and the tokenizer in `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    adapter.save_pretrained(str(folder), save_embedding_layers=False)  # the token rows are the deltas
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if k.split(".")[0] in parts and k.split(".")[0] != "llm"}
    save_file(state, str(folder / PARTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(folder))
    return folder
