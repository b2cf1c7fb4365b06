"""LoRA, `model.train_parts` and the lean optimizers (issue 17) on the real tiny trainer: a LoRA run from a saved
base changes only the adapters and the listed parts, its merged export computes what peft's own loading of the
base plus the adapter computes, resume continues exactly, optimizer offload follows the same losses, and
`train_parts` without LoRA freezes what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ross3d.errors import ConfigError
from ross3d.train.config import QWEN2_PROJECTIONS, load_train_config
from ross3d.train.loop import train
from ross3d.train.metrics import read_log
from train_fixtures import build_train_inputs

ROOT = Path(__file__).resolve().parents[1]
LORA = "model.lora={r: 4, alpha: 8, dropout: 0.05, export: both}"
PARTS = "model.train_parts=[llm, projector, image_newline, mask_token, denoiser]"  # the grounding head stays
LOSSES = ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss", "grad_norm", "task")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_train_inputs(tmp_path_factory.mktemp("lora_inputs"))


def _overrides(inputs, out: Path, *extra: str) -> list[str]:
    return [f"data.prep_dir={inputs['prep']}", f"data.cache_dir={inputs['cache']}", f"output_dir={out}",
            "max_steps=4", "micro_batch=2", "grad_accum=2", "save_every=2", "data.num_workers=0",
            "optim.lr=0.01", "optim.warmup_ratio=0.25", "tensorboard=false",
            "model.mask_schedule=sample", "model.mask_ratio=0.5",  # text samples of any step mask views
            "model.language_warmup=null", "data.pack_turns=1", *extra]


@pytest.fixture(scope="module")
def base(inputs, tmp_path_factory):
    """A fresh tiny model (with `<ground>`/`<coord>`) saved as a ross3d folder: the runs' model.init."""
    from ross3d.model.checkpoint import save_model
    from ross3d.train.model_setup import build_model

    root = tmp_path_factory.mktemp("lora_base")
    model, tokenizer = build_model(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, root)),
                                   root / "tokenizer")
    return save_model(model, root / "init", tokenizer)


@pytest.fixture(scope="module")
def lora_run(inputs, base, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out, f"model.init={base}", LORA, PARTS))
    train(config)
    return {"out": out, "config": config, "records": read_log(out / "log.jsonl"),
            "final": load_file(out / "checkpoints/final/model.safetensors")}


def _base_name(key: str) -> str:
    """The Ross3D parameter a peft-wrapped state-dict key holds the base weights of."""
    return key.replace(".token_adapter.base_layer.", ".").replace(".base_layer.", ".")


def test_lora_run_changes_only_the_adapters_and_the_listed_parts(base, lora_run):
    init = load_file(base / "model.safetensors")
    state = torch.load(lora_run["out"] / "checkpoints/step_4/mp_rank_00_model_states.pt", weights_only=False)["module"]
    adapters = {k for k in state if ".lora_" in k or "trainable_tokens_delta" in k}
    targets = {f"llm.model.layers.{i}.{'mlp' if p in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{p}"
               f".lora_{ab}.default.weight" for i in range(2) for p in QWEN2_PROJECTIONS for ab in "AB"}
    deltas = {f"llm.{m}.token_adapter.trainable_tokens_delta.default" for m in ("model.embed_tokens", "lm_head")}
    assert adapters == targets | deltas
    assert all(state[k].abs().sum() > 0 for k in adapters if ".lora_B." in k or k in deltas)  # B starts at zero
    assert {_base_name(k) for k in set(state) - adapters} == set(init)
    for key in set(state) - adapters:
        part = key.split(".")[0]
        same = torch.equal(state[key], init[_base_name(key)])
        if part in ("llm", "ground_head"):  # the LLM's own weights (LoRA) and a part train_parts leaves out
            assert same, key
    for part in ("projector", "image_newline", "mask_token", "denoiser"):
        assert any(not torch.equal(state[k], init[k]) for k in state if k.split(".")[0] == part), part


def test_merged_export_equals_the_base_plus_the_adapter(base, lora_run):
    from peft import PeftModel

    from ross3d.model.checkpoint import load_model
    from ross3d.model.synthetic import random_batch

    merged, report = load_model(lora_run["out"] / "checkpoints/final")
    assert not report.fresh and not report.unexpected
    plain, _ = load_model(base)
    with_adapter, _ = load_model(base)
    adapter = lora_run["out"] / "checkpoints/adapter"
    PeftModel.from_pretrained(with_adapter.llm, adapter)  # peft's own loading, injected in place
    parts = load_file(adapter / "ross3d_parts.safetensors")
    assert {k.split(".")[0] for k in parts} == {"projector", "image_newline", "mask_token", "denoiser"}
    assert not with_adapter.load_state_dict(parts, strict=False).unexpected_keys
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    batch = random_batch(merged.config, 2, text_len=24, grounding=[True, True])
    views = torch.zeros(2, merged.config.n_frames, dtype=torch.bool)
    views[:, ::4] = True

    def outputs(model):
        model.eval()
        with torch.no_grad():
            _, _, hidden = model.encode(batch, views)
            cond = model.reconstruction_conditions(batch, views)
            return [model.llm.get_output_embeddings()(hidden), cond["view"], cond["bev"], *model.ground_scores(batch)]

    ours, peft_side, before = outputs(merged), outputs(with_adapter), outputs(plain)
    for a, b in zip(ours, peft_side, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours[0], before[0], atol=1e-3)  # the adapter changed what the LLM computes


def test_resume_with_lora_continues_exactly(lora_run):
    out = lora_run["out"]
    (out / "checkpoints" / "latest_step").write_text("step_2")
    train(lora_run["config"], resume=True)
    after = read_log(out / "log.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4]
    for a, b in zip(lora_run["records"], after):
        for key in LOSSES:
            assert a[key] == b[key], (a["step"], key)
    resumed = load_file(out / "checkpoints/final/model.safetensors")
    assert all(torch.equal(resumed[k], lora_run["final"][k]) for k in lora_run["final"])


def test_lora_with_the_optimizer_offloaded_follows_the_same_losses(inputs, base, lora_run, tmp_path):
    offload = tmp_path / "offload.json"
    offload.write_text(json.dumps({"zero_optimization": {"offload_optimizer": {"device": "cpu"}}}))
    train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path / "run", f"model.init={base}", LORA, PARTS, "max_steps=2", "save_every=0",
        f"deepspeed_config={offload}")))
    # max_steps=2 has another schedule from step 2 on: step 1 (lr 0) and step 2 (peak lr, same weights) agree
    for a, b in zip(lora_run["records"][:2], read_log(tmp_path / "run/log.jsonl"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["task"] == a["task"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


def test_train_parts_without_lora_freezes_the_rest(inputs, base, tmp_path):
    train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, f"model.init={base}", "model.train_parts=[projector, denoiser]", "max_steps=2",
        "save_every=0")))
    init, final = load_file(base / "model.safetensors"), load_file(tmp_path / "checkpoints/final/model.safetensors")
    assert final.keys() == init.keys()
    for part in ("llm", "image_newline", "mask_token", "ground_head"):
        assert all(torch.equal(final[k], init[k]) for k in init if k.split(".")[0] == part), part
    for part in ("projector", "denoiser"):
        assert any(not torch.equal(final[k], init[k]) for k in init if k.split(".")[0] == part), part


@pytest.mark.parametrize("extra, message", [
    (["model.lora={}", "zero_stage=3"], "model.lora: needs zero_stage 2"),
    (["model.lora={}", "model.train_parts=[projector]"], "leaves out llm"),
    (["model.lora={targets: [q_proj, qkv]}"], r"model.lora.targets: \['qkv'\]"),
    (["model.lora={export: adapter}"], "model.lora.export: an adapter alone needs model.init"),
    (["model.lora={r: 0}"], "model.lora: r must be >= 1"),
    (["model.train_parts=[projector, vision_tower]"], r"model.train_parts: \['vision_tower'\]"),
])
def test_bad_lora_and_part_options_name_the_key(extra, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(ROOT / "configs/tiny.yaml", extra)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_adamw_8bit_on_cpu_is_a_one_line_error(inputs, tmp_path):
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, tmp_path, "optim.name=adamw_8bit"))
    with pytest.raises(ConfigError, match="optim.name: adamw_8bit runs on CUDA GPUs only"):
        train(config)
    assert not (tmp_path / "tokenizer").exists()  # refused before the model was built


def test_lora_defaults_are_llavas_recipe():
    lora = load_train_config(ROOT / "configs/tiny.yaml", ["model.lora={}"]).model.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.export) == (128, 256, 0.05, "merged")
    assert lora.targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_one_gpu_config_is_the_recipe(monkeypatch):
    from ross3d.train.engine import deepspeed_config

    monkeypatch.chdir(ROOT)  # the config names its DeepSpeed file relative to the repository
    config = load_train_config(ROOT / "configs/ross3d_7b_lora_1gpu.yaml")
    seven = load_train_config(ROOT / "configs/ross3d_7b.yaml")
    assert (config.micro_batch, config.zero_stage, config.precision) == (1, 2, "bf16")
    assert config.micro_batch * config.grad_accum == 8 * seven.micro_batch * seven.grad_accum == 256
    assert config.model.gradient_checkpointing and config.model.lora.r == 128 and config.model.lora.alpha == 256
    ds, _ = deepspeed_config(config, world_size=1)
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu" and ds["bf16"]["enabled"]
    assert ds["train_batch_size"] == 256


def test_print_config_shows_the_lora_section_and_reads_back():
    import yaml

    from ross3d.config_tree import annotated_yaml, to_dict
    from ross3d.train.config import TrainConfig

    for overrides in (["model.lora={r: 16}"], ["model.lora=null"]):
        config = load_train_config(ROOT / "configs/tiny.yaml", overrides)
        default = TrainConfig()
        default.model.lora = load_train_config(None, ["model.lora={}"]).model.lora if not config.model.lora else None
        text = annotated_yaml(config, default)
        assert yaml.safe_load(text) == to_dict(config)
        expected = "  lora:  # default: null" if config.model.lora else "  lora: null  # default: {r: 128"
        assert expected in text
