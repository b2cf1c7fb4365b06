"""The language warm-up (ross3d.train.language_warmup): text batches, plain texts, and a real tiny Qwen2 that learns
its corpus, deterministically, with every step's loss on file; the config rules."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from ross3d.errors import ConfigError, InputError
from ross3d.train.config import load_train_config
from ross3d.train.language_warmup import LOG_FILE, name_referents, object_labels, plain_texts, referent_names, \
    text_batch, warm_up_language, warm_up_texts

ROOT = Path(__file__).resolve().parents[1]


def test_text_batch_pads_right_and_ignores_the_padding_in_the_labels():
    ids, mask, labels = text_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[5, 6, 7], [8, -100, -100]]


def test_plain_texts_drop_only_the_image_placeholder():
    samples = [SimpleNamespace(input_ids=[3, 7, 0, 9]), SimpleNamespace(input_ids=[7, 4, 17])]
    assert plain_texts(samples, image_token_id=7) == [[3, 0, 9], [4, 17]]


def _tiny_lm(seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


# eight "sentences" of a fixed grammar: token 1 starts, then a word w, then w + 10 twice (predictable from w)
CORPUS = [[1, w, w + 10, w + 10, 2] for w in range(3, 11)]


def test_a_tiny_qwen2_learns_its_corpus_deterministically_and_logs_every_step(tmp_path):
    lm = _tiny_lm(0)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    losses = warm_up_language(lm, CORPUS, pad_id=0, steps=60, batch=4, lr=1e-2, grad_clip=1.0, seed=0,
                              device=torch.device("cpu"), output_dir=tmp_path)
    assert len(losses) == 60
    # ln(32) = 3.47 for a uniform guess; the corpus is half predictable, so the loss must at least halve
    assert losses[0] > 3.0 and sum(losses[-10:]) / 10 < 0.5 * losses[0], losses
    records = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 61))
    assert [r["lm_loss"] for r in records] == losses
    assert any(not torch.equal(before[k], v) for k, v in lm.state_dict().items())
    again = warm_up_language(_tiny_lm(0), CORPUS, pad_id=0, steps=60, batch=4, lr=1e-2, grad_clip=1.0, seed=0,
                             device=torch.device("cpu"), output_dir=None)
    assert again == losses  # the same seed gives every rank the same warm-up


def test_a_batch_larger_than_the_corpus_takes_each_text_once():
    # the first step's loss is the untrained LM's mean token loss over the whole corpus, each text once (the mean
    # over tokens does not depend on the row order), computed here by hand-padding the three texts
    with torch.no_grad():
        ids = torch.tensor(CORPUS[:3])  # equal lengths: no padding
        expected = _tiny_lm(1)(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.item()
    losses = warm_up_language(_tiny_lm(1), CORPUS[:3], pad_id=0, steps=2, batch=16, lr=1e-3, grad_clip=0.0, seed=0,
                              device=torch.device("cpu"), output_dir=None)
    assert len(losses) == 2 and losses[0] == pytest.approx(expected, rel=1e-5)


def test_config_refuses_a_warm_up_of_a_released_model_and_bad_values():
    config = load_train_config(ROOT / "configs/tiny.yaml", ["model.language_warmup={}"])
    assert (config.model.language_warmup.steps, config.model.language_warmup.batch) == (500, 16)
    with pytest.raises(ConfigError, match="model.language_warmup"):
        load_train_config(ROOT / "configs/tiny.yaml", ["model.language_warmup={}", "model.init=runs/x"])
    for bad in ("steps=0", "batch=0", "lr=0"):
        with pytest.raises(ConfigError, match="model.language_warmup"):
            load_train_config(ROOT / "configs/tiny.yaml", ["model.language_warmup={}", f"model.language_warmup.{bad}"])


def test_name_referents_inserts_each_querys_categories_after_its_ground_token():
    ground = 99
    text = [1, 2, ground, 3, 4, ground, 3]  # two packed grounding turns
    names = {(): [50], (7,): [60], (8, 9): [70, 71]}
    assert name_referents(text, ground, [(7,), ()], lambda p: names[tuple(p)]) == [1, 2, ground, 60, 3, 4, ground,
                                                                                     50, 3]
    assert name_referents(text, ground, [(8, 9), (7,)], lambda p: names[tuple(p)]) == [1, 2, ground, 70, 71, 3, 4,
                                                                                         ground, 60, 3]
    with pytest.raises(ValueError, match="2 <ground> tokens for 1 target sets"):
        name_referents(text, ground, [(7,)], lambda p: names[tuple(p)])


def test_referent_names_join_distinct_categories_and_name_the_empty_target():
    labels = {("s", 1): "chair", ("s", 2): "chair", ("s", 3): "table"}
    assert referent_names(labels, "s", [2, 1]) == "chair"
    assert referent_names(labels, "s", [3, 1, 2]) == "table chair"
    assert referent_names(labels, "s", []) == "nothing"


def _word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_warm_up_texts_name_the_referents_of_grounding_samples_only(tmp_path):
    tokenizer = _word_tokenizer(["chair", "red", "table", "nothing"])  # ids 1-4
    ground, image = 20, 30
    pq.write_table(pa.table({"scene_id": ["s0", "s0", "s0"], "object_id": [0, 1, 2], "label": ["red", "chair", "table"],
                             "box": [[0.0] * 6] * 3}), tmp_path / "objects.parquet")
    labels = object_labels(tmp_path)
    assert labels == {("s0", 0): "red", ("s0", 1): "chair", ("s0", 2): "table"}
    samples = [SimpleNamespace(task="scanrefer", scene_id="s0", input_ids=[image, 8, ground, 9], targets=((1,),)),
               SimpleNamespace(task="multi3drefer", scene_id="s0", input_ids=[image, 8, ground, 9, ground],
                               targets=((), (2, 1))),
               SimpleNamespace(task="scanqa", scene_id="s0", input_ids=[image, 8, 9], targets=((0,),))]
    assert warm_up_texts(samples, image, ground, labels, tokenizer) == [[8, ground, 1, 9], [8, ground, 4, 9, ground,
                                                                                            3, 1], [8, 9]]
    assert warm_up_texts(samples, image, ground, None, tokenizer) == plain_texts(samples, image)


def test_object_labels_name_the_file_that_lacks_labels(tmp_path):
    pq.write_table(pa.table({"scene_id": ["s0"], "object_id": [0]}), tmp_path / "objects.parquet")
    with pytest.raises(InputError, match="objects.parquet: cannot read table: .*label"):
        object_labels(tmp_path)
