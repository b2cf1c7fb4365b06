"""The local Qwen-style tokenizer and the added `<ground>`/`<coord>` tokens with mean-initialised embeddings."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from ross3d.chat import ChatEncoder
from ross3d.model.config import IMAGE_TOKEN_ID
from ross3d.model.tokenizer import build_tokenizer
from ross3d.model.tokens import add_tokens

TEXTS = ["what is on the table next to the chair?", "a brown wooden chair", "The video captures 3D spatial."]


def _llm(vocab: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def test_tokenizer_round_trip_and_chat_encoding(tmp_path):
    tok = build_tokenizer(TEXTS, save_dir=tmp_path / "tok")
    again = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "<|im_start|>user\nwhat is on the sofa?<|im_end|>\n"
    assert again.encode(text) == tok.encode(text)
    assert again.decode(again.encode(text)) == text
    assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id
    enc = ChatEncoder(tok, IMAGE_TOKEN_ID).encode([{"from": "human", "value": "<image> what?"},
                                                   {"from": "gpt", "value": "a chair"}])
    assert enc.input_ids.count(IMAGE_TOKEN_ID) == 1 and len(enc.labels) == len(enc.input_ids)


def test_added_tokens_grow_the_matrix_with_mean_rows():
    tok = build_tokenizer(TEXTS)
    n = len(tok)
    llm = _llm(n)
    old_in = llm.get_input_embeddings().weight.detach().clone()
    old_out = llm.get_output_embeddings().weight.detach().clone()
    ids = add_tokens(tok, llm)
    assert sorted(ids.values()) == [n, n + 1]
    assert ids["<ground>"] in tok.encode("x <ground> y") and ids["<coord>"] in tok.encode("at <coord> ,")
    w_in, w_out = llm.get_input_embeddings().weight, llm.get_output_embeddings().weight
    assert w_in.shape[0] == n + 2 and w_out.shape[0] == n + 2
    torch.testing.assert_close(w_in[:n], old_in)
    for i in ids.values():
        torch.testing.assert_close(w_in[i], old_in.mean(0))
        torch.testing.assert_close(w_out[i], old_out.mean(0))


def test_added_tokens_reuse_padded_rows_without_shrinking():
    tok = build_tokenizer(TEXTS)
    n = len(tok)
    llm = _llm(n + 10)  # a checkpoint matrix padded beyond the tokenizer, as Qwen2's 152,064 rows
    old = llm.get_input_embeddings().weight.detach().clone()
    ids = add_tokens(tok, llm)
    w = llm.get_input_embeddings().weight
    assert w.shape[0] == n + 10
    for i in ids.values():
        torch.testing.assert_close(w[i], old[:n].mean(0))
    torch.testing.assert_close(w[n + 2:], old[n + 2:])


ZERO3_SCRIPT = """
import os, socket, sys, torch
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                  LOCAL_RANK="0")
import deepspeed
from transformers import Qwen2Config, Qwen2ForCausalLM
from ross3d.model.tokenizer import build_tokenizer
from ross3d.model.tokens import add_tokens
from ross3d.train.zero import gathered_for_update
deepspeed.init_distributed(dist_backend="gloo")
tok = build_tokenizer(sys.argv[1:])
n = len(tok)
cfg = Qwen2Config(vocab_size=n + 4, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1)
with deepspeed.zero.Init(config_dict_or_path={"zero_optimization": {"stage": 3}, "train_batch_size": 1}):
    llm = Qwen2ForCausalLM(cfg)
w = llm.get_input_embeddings().weight
assert hasattr(w, "ds_id") and w.numel() == 0
with deepspeed.zero.GatheredParameters([w]):
    old = w.detach().clone()
try:
    add_tokens(build_tokenizer(sys.argv[1:]), llm)  # no gather for partitioned weights: refused, nothing written
    raise SystemExit("a partitioned embedding was written without the trainer's gather")
except Exception as err:
    assert "ZeRO-3-partitioned" in str(err), err
ids = add_tokens(tok, llm, gathered_for_update)
with deepspeed.zero.GatheredParameters([w]):
    for i in ids.values():
        assert torch.allclose(w[i], old[:n].mean(0)), i
    assert torch.equal(w[:n], old[:n])
torch.distributed.barrier()
torch.distributed.destroy_process_group()
print("OK", sorted(ids.values()))
"""


def test_mean_init_under_zero3_partitioning():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", ZERO3_SCRIPT, *TEXTS], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK" in proc.stdout
