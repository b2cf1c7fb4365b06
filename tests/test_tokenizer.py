"""`load_tokenizer` on the folder layout ross3d writes (tokenizer.json beside a `model_type: ross3d` config.json):
the same vocabulary comes back, and transformers prints nothing into the command's output (a warning there broke the
one-line error of `eval run`)."""

from __future__ import annotations

import json
import logging

import transformers

from ross3d.model.tokenizer import build_tokenizer, load_tokenizer


def test_a_ross3d_checkpoint_folder_loads_its_tokenizer_without_warnings(tmp_path, caplog):
    written = build_tokenizer(["the chair is next to the table", "what is on the desk?"], vocab_size=300,
                              save_dir=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "ross3d", "ross3d": {}}))
    transformers.utils.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            loaded = load_tokenizer(tmp_path)
    finally:
        transformers.utils.logging.disable_propagation()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("transformers")] == []
    text = "the chair is on the desk"
    assert loaded(text)["input_ids"] == written(text)["input_ids"]
    assert loaded.convert_tokens_to_ids("<|im_start|>") == written.convert_tokens_to_ids("<|im_start|>")
