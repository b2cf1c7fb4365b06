"""Checkpoint formats: our safetensors round trip, the LLaVA-NeXT converter (CLI), transformers LLaVA-OneVision
loading, and the 2D Ross mm_inv_projector initialisation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from ross3d.errors import InputError
from ross3d.model.checkpoint import init_denoiser_from_ross2d, load_llava_onevision, load_model, save_model
from ross3d.model.config import preset
from ross3d.model.ross3d import Ross3D
from ross3d.model.synthetic import random_batch
from ross3d_cli.app import app


@pytest.fixture(scope="module")
def config():
    return preset("tiny", ground_token_id=300, coord_token_id=301)


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(3)
    return Ross3D(config).eval()


def _original_name(key: str) -> str:
    """Our key -> the original Ross3D (LLaVA-NeXT) name, written out independently of the converter's table."""
    if key.startswith("llm.lm_head."):
        return key[len("llm."):]
    if key.startswith("llm.model."):
        return key[len("llm."):]
    if key.startswith("projector.linear_1."):
        return "model.mm_projector.0." + key.split(".", 2)[2]
    if key.startswith("projector.linear_2."):
        return "model.mm_projector.2." + key.split(".", 2)[2]
    if key in ("image_newline", "mask_token"):
        return "model." + key
    if key.startswith("denoiser."):
        return "model.mm_inv_projector.net." + key[len("denoiser."):]
    if key == "ground_head.zero_target":
        return "ground_head_zero_target"
    head, rest = key.split(".", 2)[1:]
    return f"ground_head_{head}.{rest}"


def test_save_load_round_trip(model, config, tmp_path):
    save_model(model, tmp_path / "ckpt")
    loaded, report = load_model(tmp_path / "ckpt")
    assert report.fresh == [] and report.unexpected == []
    assert loaded.config == config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    batch = random_batch(config, 1, grounding=[True])
    torch.testing.assert_close(loaded.eval().ground_scores(batch)[0], model.ground_scores(batch)[0])


def test_convert_llava_next_checkpoint_cli(model, config, tmp_path):
    from release_fixtures import write_slow_tokenizer

    src, dst = tmp_path / "orig", tmp_path / "ours"
    src.mkdir()
    ids = write_slow_tokenizer(src, ross3d_tokens=True)  # the tokenizer decides the ids
    state = {_original_name(k): v.clone() for k, v in model.state_dict().items()}
    state["model.mm_pixel_decoder.decoder.conv_in.weight"] = torch.zeros(2, 2)
    save_file(state, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({
        "model_type": "llava_qwen", "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads, "intermediate_size": config.intermediate_size,
        "rope_theta": config.rope_theta, "mm_hidden_size": config.vision_dim, "ground_head_temperature": 0.07}))
    result = CliRunner().invoke(app, ["convert-checkpoint", str(src), str(dst), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    assert "1 dropped" in result.output and "0 unexpected" in result.output
    assert "no vision tower stored" in " ".join(result.output.split())
    loaded, report = load_model(dst)
    assert report.fresh == []
    assert (loaded.config.ground_token_id, loaded.config.coord_token_id) == (ids["<ground>"], ids["<coord>"])
    assert (dst / "tokenizer.json").exists() and not (dst / "vision_tower").exists()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_convert_reports_bad_input(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    result = CliRunner().invoke(app, ["convert-checkpoint", str(tmp_path), str(tmp_path / "out")])
    assert result.exit_code == 1 and "config.json" in result.output and "JSON" in result.output


def test_load_transformers_llava_onevision(tmp_path):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    torch.manual_seed(0)
    hf_config = LlavaOnevisionConfig(
        text_config=dict(model_type="qwen2", vocab_size=320, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14),
        image_token_index=319, video_token_index=318)
    hf = LlavaOnevisionForConditionalGeneration(hf_config).eval()
    hf.save_pretrained(str(tmp_path / "ov"))
    ours, report = load_llava_onevision(tmp_path / "ov", base=preset("tiny"))
    assert ours.config.hidden_size == 48 and ours.config.vision_dim == 32 and ours.config.rope_theta == 10000.0
    assert any(k.startswith("vision_tower.") for k in report.dropped) and report.unexpected == []
    assert "mask_token" in report.fresh and not any(k.startswith("llm.") for k in report.fresh)
    torch.testing.assert_close(ours.image_newline, hf.model.image_newline)
    torch.testing.assert_close(ours.projector.linear_2.weight, hf.model.multi_modal_projector.linear_2.weight)
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours.llm(input_ids=ids).logits, hf(input_ids=ids).logits)
        feats = torch.randn(5, 32)
        torch.testing.assert_close(ours.projector(feats), hf.model.multi_modal_projector(feats))


def test_ross2d_denoiser_init_resizes_duplicates_and_reports(model, config, tmp_path):
    own = model.denoiser.state_dict()
    d = config.denoiser_dim
    table = torch.zeros(1, 27 * 27, d)
    table[0, :, 0] = torch.arange(27).repeat(27).float()  # channel 0 = column index
    src = {"model.mm_inv_projector.net.pos_embed": table,
           "model.mm_inv_projector.net.x_embedder.proj.weight": torch.randn_like(own["x_embedder_view.proj.weight"]),
           "model.mm_inv_projector.net.x_embedder.proj.bias": torch.randn(d),
           "model.mm_inv_projector.net.z_embedder.1.weight": torch.randn(d, config.hidden_size),
           "model.mm_inv_projector.net.z_embedder.1.bias": torch.randn(d),
           "model.mm_inv_projector.net.something_else": torch.zeros(3)}
    for key, value in own.items():
        if key.split(".")[0] in ("t_embedder", "blocks", "final_layer"):
            src[f"model.mm_inv_projector.net.{key}"] = torch.randn_like(value)
    torch.save(src, tmp_path / "mm_inv_projector.bin")
    fresh = Ross3D(config)
    report = init_denoiser_from_ross2d(fresh, tmp_path / "mm_inv_projector.bin")
    den = fresh.denoiser
    cols = [min(max((j + 0.5) * 27 / 14 - 0.5, 0.0), 26.0) for j in range(14)]
    torch.testing.assert_close(den.pos_embed_view[0, :, 0].reshape(14, 14), torch.tensor([cols] * 14))
    torch.testing.assert_close(den.pos_embed_bev.data, table)
    for kind in ("view", "bev"):
        torch.testing.assert_close(getattr(den, f"x_embedder_{kind}").proj.bias.data,
                                   src["model.mm_inv_projector.net.x_embedder.proj.bias"])
        torch.testing.assert_close(getattr(den, f"z_embedder_{kind}").proj[1].weight.data,
                                   src["model.mm_inv_projector.net.z_embedder.1.weight"])
    torch.testing.assert_close(den.blocks[0].attn.qkv.weight.data,
                               src["model.mm_inv_projector.net.blocks.0.attn.qkv.weight"])
    assert report.unexpected == ["model.mm_inv_projector.net.something_else"]
    assert sorted(report.fresh) == sorted(f"z_embedder_{k}.{n}" for k in ("view", "bev")
                                          for n in ("cls_token", "k.weight", "v.weight", "linear.weight"))


def test_missing_weights_file_is_an_input_error(tmp_path, model):
    save_model(model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(tmp_path / "ckpt")
