"""The model as transformers loads it: AutoConfig/AutoModel after `import ross3d`, sharded save_pretrained, folders
in the format before (nested config.json), and the model card of an export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from ross3d.errors import InputError
from ross3d.model.checkpoint import load_model, save_model
from ross3d.model.config import Ross3DConfig, preset
from ross3d.model.model_card import write_model_card
from ross3d.model.ross3d import Ross3D
from ross3d.model.synthetic import random_batch
from ross3d.model.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config():
    return preset("tiny", ground_token_id=300, coord_token_id=301)


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(5)
    return Ross3D(config).eval()


def _outputs(model: Ross3D, config: Ross3DConfig) -> dict:
    """Training losses (one fixed noise stream), grounding scores and greedy tokens of one batch."""
    batch = random_batch(config, 2, grounding=[False, True], seed=1)
    with torch.no_grad():
        losses = model(batch, generator=torch.Generator().manual_seed(7))
    return {"losses": {k: v.item() for k, v in losses.items()},
            "scores": [s.tolist() for s in model.ground_scores(random_batch(config, 2, grounding=[True, True]))],
            "tokens": model.generate(random_batch(config, 2, seed=2), max_new_tokens=4, eos_token_id=0)}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def test_automodel_round_trip_gives_identical_outputs(model, config, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = build_tokenizer(["a chair next to the table", "the lamp is on the desk"], 300)
    save_model(model, tmp_path / "m", tokenizer)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "ross3d"
    loaded_config = AutoConfig.from_pretrained(tmp_path / "m")
    assert type(loaded_config) is Ross3DConfig and loaded_config == config
    loaded = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert type(loaded) is Ross3D
    state = loaded.state_dict()
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert _outputs(loaded, loaded.config) == _outputs(model, config)
    text = "the lamp is on the desk"
    assert AutoTokenizer.from_pretrained(tmp_path / "m")(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_sharded_save_and_load(model, config, tmp_path):
    """A model forced over a 100 kB shard size: shards of at most 100 kB (or one tensor), an index naming every
    tensor, and both loaders read it back exactly."""
    limit = 100_000
    folder = save_model(model, tmp_path / "sharded", max_shard_size=limit)
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    assert all(re.fullmatch(rf"model-\d{{5}}-of-{len(shards):05d}\.safetensors", p.name) for p in shards)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    state = model.state_dict()
    assert set(weight_map) == set(state) and set(weight_map.values()) == {p.name for p in shards}
    for shard in shards:
        tensors = load_file(str(shard))
        assert len(tensors) == 1 or sum(t.numel() * t.element_size() for t in tensors.values()) <= limit
        assert all(weight_map[k] == shard.name for k in tensors)
    assert all(torch.equal(_tensors(folder)[k], v) for k, v in state.items())

    from transformers import AutoModel

    for loaded in (load_model(folder)[0], AutoModel.from_pretrained(folder)):
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    shards[1].unlink()
    with pytest.raises(InputError, match=re.escape(shards[1].name)):
        load_model(folder)


def test_folder_in_the_format_before_loads(model, config, tmp_path):
    """config.json as ross3d wrote it before PreTrainedConfig (every field nested under "ross3d"), written here by
    hand with the weights in one model.safetensors."""
    folder = tmp_path / "before"
    folder.mkdir()
    fields = {"vocab_size": 512, "hidden_size": 96, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
              "intermediate_size": 192, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
              "max_position_embeddings": 4096, "tie_word_embeddings": False, "vision_dim": 32, "n_frames": 8,
              "patch_grid": 27, "pool_grid": 14, "voxel_size": 0.1, "xyz_min": [-15.0, -15.0, -5.0],
              "xyz_max": [15.0, 15.0, 5.0], "mask_ratio": 0.25, "mask_schedule": "step", "latent_channels": 16,
              "bev_latent_grid": 54, "denoiser_dim": 64, "denoiser_depth": 2, "denoiser_heads": 4,
              "denoiser_mlp_ratio": 4.0, "diffusion_steps": 1000, "view_repeat": 0, "latent_shift": 0.1159,
              "latent_scale": 0.3611, "lm_labelled_only": True, "ground_temperature": 0.07, "image_token_id": -200,
              "ground_token_id": 300, "coord_token_id": 301, "extra": {"step": 12}}
    (folder / "config.json").write_text(json.dumps({"model_type": "ross3d", "ross3d": fields}, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})

    from transformers import AutoModel

    loaded, report = load_model(folder)
    assert report.fresh == [] and report.unexpected == []
    auto = AutoModel.from_pretrained(folder)
    for m in (loaded, auto):
        # fields added since take their defaults: the original's epsilon prediction and pooled view condition,
        # Qwen2's init std
        assert m.config.fields() == {**fields, "xyz_min": (-15.0, -15.0, -5.0), "xyz_max": (15.0, 15.0, 5.0),
                                     "prediction_type": "epsilon", "initializer_range": 0.02,
                                     "view_condition": "pooled"}
        assert all(torch.equal(m.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_config_with_an_unknown_key_names_the_file(model, tmp_path):
    folder = save_model(model, tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "hiden_size": 8}))
    with pytest.raises(InputError, match=r"config\.json.*unknown keys \['hiden_size'\]"):
        load_model(folder)


REGISTRATION = """
import sys
{first}
from transformers import AutoConfig, AutoModel
config = AutoConfig.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1])
print(type(config).__name__, type(model).__name__, before)
"""


@pytest.mark.parametrize("first, before", [
    ("import ross3d\nbefore = 'transformers' in sys.modules or 'torch' in sys.modules", "False"),
    ("import transformers.models.auto.modeling_auto\nimport ross3d\nbefore = None", "None"),
])
def test_import_ross3d_registers_the_auto_classes(model, tmp_path, first, before):
    """Before or after transformers' Auto modules load; `import ross3d` itself imports neither transformers nor
    torch."""
    save_model(model, tmp_path / "m")
    proc = subprocess.run([sys.executable, "-c", REGISTRATION.format(first=first), str(tmp_path / "m")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["Ross3DConfig", "Ross3D", before]


def test_model_card_lists_step_metrics_and_training_config(config, tmp_path):
    folder = tmp_path / "run" / "checkpoints" / "final"
    folder.mkdir(parents=True)
    results = tmp_path / "run" / "results"
    (results / "scanqa").mkdir(parents=True)
    (results / "scanqa" / "METRICS.json").write_text(json.dumps({"EM@1": 21.5, "CIDEr": 80.25, "n": 40}))
    training = {"seed": 3, "model": {"preset": "tiny", "mask_ratio": 0.25}, "lr": 2e-5}
    card = write_model_card(folder, config.replace(extra={"step": 17}), "run", training, results).read_text()
    assert "Exported at optimizer step 17." in card
    assert "| scanqa | EM@1 | 21.5 |" in card and "| scanqa | CIDEr | 80.25 |" in card and "| scanqa | n | 40 |" in card
    block = card.split("## Training config")[1].split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(block) == training
    assert 'AutoModel.from_pretrained("DIR")' in card and "| hidden_size | 96 |" in card

    bare = write_model_card(folder, config, "run", training, tmp_path / "no-results").read_text()
    assert "## Eval metrics" not in bare and "No training step recorded." in bare


def test_from_pretrained_initialises_only_what_the_checkpoint_lacks(model, config, tmp_path):
    """Tensors a folder lacks get their part's initialisation (adaLN-zero, the sin-cos table, N(0, 1/d) tokens);
    every stored tensor keeps its value, also a denoiser table beside a missing one."""
    from transformers import AutoModel

    folder = save_model(model, tmp_path / "partial")
    state = load_file(str(folder / "model.safetensors"))
    state["denoiser.pos_embed_view"] = torch.full_like(state["denoiser.pos_embed_view"], 0.5)  # no init gives 0.5
    dropped = [k for k in state if k.startswith("denoiser.blocks.0.")
               or k in ("denoiser.pos_embed_bev", "ground_head.zero_target", "mask_token")]
    for key in dropped:
        del state[key]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    loaded = AutoModel.from_pretrained(folder).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert all(torch.isfinite(loaded[k]).all() for k in dropped)
    for name in ("weight", "bias"):  # DiT's adaLN-zero
        assert not loaded[f"denoiser.blocks.0.adaLN_modulation.1.{name}"].any()
    assert loaded["denoiser.blocks.0.attn.qkv.weight"].std() > 0
    d = config.denoiser_dim  # position (0, 0) of the sin-cos table: sin 0 = 0, cos 0 = 1 on both axes
    quarter = d // 4
    expected = torch.tensor(([0.0] * quarter + [1.0] * quarter) * 2)
    assert torch.equal(loaded["denoiser.pos_embed_bev"][0, 0], expected)
    assert 0.5 < loaded["mask_token"].norm() < 1.5 and loaded["ground_head.zero_target"].std() > 0.5


def test_visualize_reads_the_step_in_both_formats(tmp_path):
    from ross3d.visualize.run import checkpoint_step

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps({"model_type": "ross3d", "extra": {"step": 40}}))
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "config.json").write_text(json.dumps({"model_type": "ross3d",
                                                                 "ross3d": {"extra": {"step": 12}}}))
    assert checkpoint_step(tmp_path / "new") == "40" and checkpoint_step(tmp_path / "before") == "12"


def test_a_v_predicting_model_loads_v_predicting(tmp_path):
    """prediction_type travels through config.json: the loaded model's loss targets v and its samplers read v, so
    its training losses equal the saved model's, and differ from an epsilon model with the same weights."""
    config = preset("tiny", prediction_type="v_prediction")
    torch.manual_seed(3)
    model = Ross3D(config).eval()
    for p in model.denoiser.final_layer.parameters():  # adaLN-zero: a zero output would be the same for any target
        p.data.normal_(0, 0.1)
    save_model(model, tmp_path / "v", build_tokenizer(["a chair"], 300))
    loaded, _ = load_model(tmp_path / "v")
    assert loaded.diffusion.prediction_type == "v_prediction"
    assert loaded.diffusion.scheduler("ddim").config.prediction_type == "v_prediction"
    batch = random_batch(config, 2, grounding=[False, False], seed=1)
    with torch.no_grad():
        def bev(m):
            return m(batch, generator=torch.Generator().manual_seed(7))["bev_loss"].item()

        epsilon = Ross3D(config.replace(prediction_type="epsilon")).eval()
        epsilon.load_state_dict(model.state_dict())
        assert bev(loaded.eval()) == bev(model) != bev(epsilon)
