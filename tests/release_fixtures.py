"""Miniatures of the released artifacts a user starts from, written in their release formats with tiny sizes and
random weights, so the tests take the user's path (checked against the public sources: the original repository's
model classes and training script, Haochen-Wang409/ross3d; transformers' Qwen2 and SigLIP names; the LLaVA-NeXT
config.json of lmms-lab's Qwen2 releases):

- lmms-lab/LLaVA-Video-7B-Qwen2: a LLaVA-NeXT config.json (model_type llava, LlavaQwenForCausalLM, mm_* keys, the
  Qwen2 fields), the weights as bf16 safetensors shards `model-0000i-of-0000n.safetensors` plus
  `model.safetensors.index.json`, the slow-tokenizer files only (vocab.json, merges.txt, added_tokens.json,
  tokenizer_config.json naming Qwen2Tokenizer, special_tokens_map.json; no tokenizer.json), an embedding padded
  beyond the tokenizer (152,064 rows for 151,646 tokens), and the SigLIP tower without its last layer or head
  under `model.vision_tower.vision_tower.vision_model.*`.
- HaochenWang/llava-video-qwen2-7b-ross3d: the same plus `model.mm_inv_projector.net.*` (the 3D denoiser),
  `ground_head_obj/query.*`, `ground_head_zero_target`, `model.mask_token`, the frozen FLUX VAE the original saves
  with the model (`model.mm_pixel_decoder.pixel_decoder.*`), the Ross3D config keys, and `<ground>`/`<coord>` as
  non-special added tokens (the original's `add_tokens`) with the embedding resized to the tokenizer.
- the FLUX.1-dev `vae/` folder: diffusers AutoencoderKL config.json + diffusion_pytorch_model.safetensors (bf16).
- the 2D Ross `mm_inv_projector.bin`: a torch pickle of `model.mm_inv_projector.net.*` with one `x_embedder`, a
  per-token `z_embedder` (SiLU, Linear), a 27x27 `pos_embed`, `t_embedder`, `blocks`, `final_layer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TOWER = "model.vision_tower.vision_tower.vision_model."
CORPUS = ["You are a helpful assistant.", "Answer the question simply.", "Answer the question using a single word "
          "or phrase.", "Identify the object according to the following description.", "Given an object located "
          "at , describe the object in detail.", "what is in the middle of the room? the coffee table is brown",
          "There may be no corresponding object, or there may be one or more objects.", "the chair is next to the "
          "bed and the lamp is on the desk near the window", "The video captures 3D spatial information of a "
          "scene. Please focus on the spatial relationships in the video and answer the following questions."]


@dataclass(frozen=True)
class Sizes:
    """The miniature's sizes; names as the 7B release's config fields."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    tower_width: int = 32
    tower_layers: int = 3  # the full tower; the checkpoints store all but the last
    denoiser_dim: int = 64
    denoiser_depth: int = 2
    latent_channels: int = 16

    def tower_config(self) -> dict:
        """A SiglipVisionConfig of the full tower (what `--vision-config` takes)."""
        return {"model_type": "siglip_vision_model", "hidden_size": self.tower_width,
                "intermediate_size": 2 * self.tower_width, "num_hidden_layers": self.tower_layers,
                "num_attention_heads": 2, "num_channels": 3, "image_size": 384, "patch_size": 14,
                "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "attention_dropout": 0.0}


def _randn(*shape: int, scale: float = 0.02, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


# --------------------------------------------------------------------------------------------- tokenizer
def write_slow_tokenizer(folder: Path, ross3d_tokens: bool = False) -> dict[str, int]:
    """A byte-level BPE as Qwen2's slow files: vocab.json + merges.txt of the regular tokens, the Qwen specials
    (and, for the Ross3D release, `<ground>`/`<coord>` as non-special tokens) appended as added tokens.
    Returns {added token: id} plus "len" (the tokenizer's length)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS * 4, trainer=trainer)
    core.model.save(str(folder))  # vocab.json, merges.txt
    n = len(json.loads((folder / "vocab.json").read_text()))
    added = {tok: n + i for i, tok in enumerate(QWEN_SPECIALS)}
    special = set(added)
    if ross3d_tokens:
        added |= {"<ground>": n + 3, "<coord>": n + 4}
    (folder / "added_tokens.json").write_text(json.dumps(added, indent=2))
    decoder = {str(i): {"content": tok, "lstrip": False, "normalized": tok not in special, "rstrip": False,
                        "single_word": False, "special": tok in special} for tok, i in added.items()}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "padding_side": "right",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}, indent=2))
    token = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "eos_token": {"content": "<|im_end|>", **token}, "pad_token": {"content": "<|endoftext|>", **token}}))
    return {**added, "len": n + len(added)}


# --------------------------------------------------------------------------------------------- weights
def write_shards(folder: Path, state: dict[str, torch.Tensor], n_shards: int = 2) -> None:
    """bf16 safetensors shards named as transformers' save_pretrained, plus model.safetensors.index.json."""
    keys = sorted(state)
    names = [f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" for i in range(n_shards)]
    weight_map = {}
    for i, name in enumerate(names):
        part = {k: state[k].to(torch.bfloat16).contiguous() for k in keys[i::n_shards]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map |= {k: name for k in part}
    total = sum(v.numel() * 2 for v in state.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def llm_state(sizes: Sizes, rows: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Qwen2 weights under the LLaVA-NeXT names (`model.*`, `lm_head.weight`)."""
    h, kv = sizes.hidden, sizes.hidden // sizes.heads * sizes.kv_heads
    state = {"model.embed_tokens.weight": _randn(rows, h, gen=gen), "lm_head.weight": _randn(rows, h, gen=gen),
             "model.norm.weight": torch.ones(h)}
    for i in range(sizes.layers):
        p = f"model.layers.{i}."
        for name, out in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            state[p + f"self_attn.{name}.weight"] = _randn(out, h, gen=gen)
            state[p + f"self_attn.{name}.bias"] = _randn(out, gen=gen)
        state[p + "self_attn.o_proj.weight"] = _randn(h, h, gen=gen)
        state[p + "mlp.gate_proj.weight"] = _randn(sizes.intermediate, h, gen=gen)
        state[p + "mlp.up_proj.weight"] = _randn(sizes.intermediate, h, gen=gen)
        state[p + "mlp.down_proj.weight"] = _randn(h, sizes.intermediate, gen=gen)
        state[p + "input_layernorm.weight"] = torch.ones(h)
        state[p + "post_attention_layernorm.weight"] = torch.ones(h)
    return state


def tower_state(sizes: Sizes, gen: torch.Generator, layers: int | None = None) -> dict[str, torch.Tensor]:
    """SigLIP vision weights as `vision_model.*` (transformers-4 names), `layers` of them (default: all but the
    last, as the releases store), with the post-layernorm and no head."""
    w, mlp, patches = sizes.tower_width, 2 * sizes.tower_width, (384 // 14) ** 2
    layers = sizes.tower_layers - 1 if layers is None else layers
    state = {"vision_model.embeddings.patch_embedding.weight": _randn(w, 3, 14, 14, gen=gen),
             "vision_model.embeddings.patch_embedding.bias": _randn(w, gen=gen),
             "vision_model.embeddings.position_embedding.weight": _randn(patches, w, gen=gen),
             "vision_model.post_layernorm.weight": torch.ones(w), "vision_model.post_layernorm.bias": torch.zeros(w)}
    for i in range(layers):
        p = f"vision_model.encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            state[p + f"self_attn.{name}.weight"] = _randn(w, w, scale=0.1, gen=gen)
            state[p + f"self_attn.{name}.bias"] = _randn(w, gen=gen)
        for norm in ("layer_norm1", "layer_norm2"):
            state[p + f"{norm}.weight"] = 1 + _randn(w, scale=0.1, gen=gen)
            state[p + f"{norm}.bias"] = _randn(w, gen=gen)
        state[p + "mlp.fc1.weight"] = _randn(mlp, w, scale=0.1, gen=gen)
        state[p + "mlp.fc1.bias"] = _randn(mlp, gen=gen)
        state[p + "mlp.fc2.weight"] = _randn(w, mlp, scale=0.1, gen=gen)
        state[p + "mlp.fc2.bias"] = _randn(w, gen=gen)
    return state


def denoiser_state(sizes: Sizes, gen: torch.Generator, prefix: str = "model.mm_inv_projector.net.") -> dict:
    """Ross3DDenoiserMulti's DiT: view and BEV embedders, tables and attention poolers, t_embedder, blocks, final
    layer (the original's module names)."""
    d, c, z = sizes.denoiser_dim, 4 * sizes.latent_channels, sizes.hidden
    state = {"t_embedder.mlp.0.weight": _randn(d, 256, gen=gen), "t_embedder.mlp.0.bias": _randn(d, gen=gen),
             "t_embedder.mlp.2.weight": _randn(d, d, gen=gen), "t_embedder.mlp.2.bias": _randn(d, gen=gen),
             "final_layer.linear.weight": _randn(c, d, gen=gen), "final_layer.linear.bias": _randn(c, gen=gen),
             "final_layer.adaLN_modulation.1.weight": _randn(2 * d, d, gen=gen),
             "final_layer.adaLN_modulation.1.bias": _randn(2 * d, gen=gen)}
    for kind, grid in (("view", 14), ("bev", 27)):
        state |= {f"x_embedder_{kind}.proj.weight": _randn(d, c, 1, 1, gen=gen),
                  f"x_embedder_{kind}.proj.bias": _randn(d, gen=gen),
                  f"pos_embed_{kind}": _randn(1, grid * grid, d, gen=gen),
                  f"z_embedder_{kind}.proj.1.weight": _randn(d, z, gen=gen),
                  f"z_embedder_{kind}.proj.1.bias": _randn(d, gen=gen),
                  f"z_embedder_{kind}.k.weight": _randn(d, d, gen=gen),
                  f"z_embedder_{kind}.v.weight": _randn(d, d, gen=gen),
                  f"z_embedder_{kind}.cls_token": _randn(1, grid * grid, d, gen=gen),
                  f"z_embedder_{kind}.linear.weight": _randn(d, d, gen=gen)}
    for i in range(sizes.denoiser_depth):
        p = f"blocks.{i}."
        state |= {p + "attn.qkv.weight": _randn(3 * d, d, gen=gen), p + "attn.qkv.bias": _randn(3 * d, gen=gen),
                  p + "attn.proj.weight": _randn(d, d, gen=gen), p + "attn.proj.bias": _randn(d, gen=gen),
                  p + "mlp.fc1.weight": _randn(4 * d, d, gen=gen), p + "mlp.fc1.bias": _randn(4 * d, gen=gen),
                  p + "mlp.fc2.weight": _randn(d, 4 * d, gen=gen), p + "mlp.fc2.bias": _randn(d, gen=gen),
                  p + "adaLN_modulation.1.weight": _randn(6 * d, d, gen=gen),
                  p + "adaLN_modulation.1.bias": _randn(6 * d, gen=gen)}
    return {prefix + k: v for k, v in state.items()}


def ground_state(sizes: Sizes, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The InfoNCE heads at the top level of Ross3DQwenForCausalLM: Linear, ReLU, LayerNorm, Linear."""
    h = sizes.hidden
    state = {"ground_head_zero_target": torch.randn(h, generator=gen)}
    for head in ("obj", "query"):
        p = f"ground_head_{head}."
        state |= {p + "0.weight": _randn(h, h, gen=gen), p + "0.bias": _randn(h, gen=gen),
                  p + "2.weight": torch.ones(h), p + "2.bias": torch.zeros(h),
                  p + "3.weight": _randn(h, h, gen=gen), p + "3.bias": _randn(h, gen=gen)}
    return state


# --------------------------------------------------------------------------------------------- the folders
def _llava_config(sizes: Sizes, rows: int) -> dict:
    """config.json of LLaVA-Video-7B-Qwen2 (LLaVA-NeXT `llava` type), the sizes shrunk."""
    return {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava", "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": sizes.hidden,
        "image_aspect_ratio": "anyres_max_9", "image_crop_resolution": None, "image_grid_pinpoints": [[384, 384]],
        "image_split_resolution": None, "initializer_range": 0.02, "intermediate_size": sizes.intermediate,
        "max_position_embeddings": 32768, "max_window_layers": sizes.layers, "mm_hidden_size": sizes.tower_width,
        "mm_newline_position": "grid", "mm_patch_merge_type": "spatial_unpad", "mm_projector_lr": None,
        "mm_projector_type": "mlp2x_gelu", "mm_resampler_type": None, "mm_spatial_pool_mode": "bilinear",
        "mm_spatial_pool_stride": 2, "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "mm_vision_tower_lr": 2e-06, "num_attention_heads": sizes.heads, "num_hidden_layers": sizes.layers,
        "num_key_value_heads": sizes.kv_heads, "pos_skipping_range": 4096, "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
        "tokenizer_model_max_length": 32768, "tokenizer_padding_side": "right", "torch_dtype": "bfloat16",
        "transformers_version": "4.40.0.dev0", "use_cache": True, "use_mm_proj": True, "use_pos_skipping": False,
        "use_sliding_window": False, "vision_tower_pretrained": None, "vocab_size": rows}


def _base_state(sizes: Sizes, rows: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    h = sizes.hidden
    state = llm_state(sizes, rows, gen)
    state |= {"model.mm_projector.0.weight": _randn(h, sizes.tower_width, gen=gen),
              "model.mm_projector.0.bias": _randn(h, gen=gen), "model.mm_projector.2.weight": _randn(h, h, gen=gen),
              "model.mm_projector.2.bias": _randn(h, gen=gen), "model.image_newline": _randn(h, scale=0.1, gen=gen)}
    return state | {"model.vision_tower.vision_tower." + k: v for k, v in tower_state(sizes, gen).items()}


def write_llava_video(folder: Path, sizes: Sizes = Sizes(), seed: int = 0) -> dict:
    """lmms-lab/LLaVA-Video-7B-Qwen2 in miniature; returns the tokenizer's added ids and `len`."""
    gen = torch.Generator().manual_seed(seed)
    tokens = write_slow_tokenizer(folder)
    rows = -(-(tokens["len"] + 2) // 64) * 64  # padded beyond the tokenizer, like 152,064 rows for 151,646 ids
    (folder / "config.json").write_text(json.dumps(_llava_config(sizes, rows), indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 151643, "eos_token_id": 151645}))
    write_shards(folder, _base_state(sizes, rows, gen))
    return tokens


def write_ross3d_release(folder: Path, sizes: Sizes = Sizes(), seed: int = 1) -> dict:
    """HaochenWang/llava-video-qwen2-7b-ross3d in miniature; returns the tokenizer's added ids and `len`."""
    gen = torch.Generator().manual_seed(seed)
    tokens = write_slow_tokenizer(folder, ross3d_tokens=True)
    rows = tokens["len"]  # the original resizes the embedding to len(tokenizer)
    config = _llava_config(sizes, rows) | {
        "architectures": ["Ross3DQwenForCausalLM"], "model_type": "ross3d_qwen", "ground_head_type": "infonce",
        "ground_head_temperature": 0.07, "ground_token_ids": [tokens["<ground>"]],
        "coord_token_ids": [tokens["<coord>"]], "mm_inv_projector_type": "denoiser_vit3x",
        "mm_pixel_decoder": "./checkpoints/FLUX.1-dev", "mm_inv_hidden_size": 4 * sizes.latent_channels,
        "ross_enable": True, "ross_multi_task": True, "image_embed_len": 196, "decode_image_size": 216,
        "world_position_embedding_type": "avg-discrete-sin3d", "object_feature_type": "patch14-pe",
        "mm_tunable_parts": "mm_mlp_adapter,mm_language_model,mm_inv_adapter"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = _base_state(sizes, rows, gen) | denoiser_state(sizes, gen) | ground_state(sizes, gen)
    state["model.mask_token"] = _randn(sizes.hidden, scale=0.1, gen=gen)
    state["model.mm_pixel_decoder.pixel_decoder.encoder.conv_in.weight"] = _randn(8, 3, 3, 3, gen=gen)
    write_shards(folder, state)
    return tokens


def write_flux_vae(folder: Path, seed: int = 0) -> Path:
    """The FLUX.1-dev `vae/` folder layout (diffusers AutoencoderKL, bf16 weights), FLUX-shaped but tiny."""
    from ross3d.cache import tiny

    vae = tiny.build_vae(tiny.tiny_flux_vae_config(), seed).to(torch.bfloat16)
    vae.save_pretrained(str(folder))
    return folder


def write_ross2d_projector(path: Path, sizes: Sizes = Sizes(), seed: int = 2) -> Path:
    """The 2D Ross `mm_inv_projector.bin`: one x_embedder, a per-token SiLU-Linear z_embedder, a 27x27 table."""
    gen = torch.Generator().manual_seed(seed)
    d, c = sizes.denoiser_dim, 4 * sizes.latent_channels
    full = denoiser_state(sizes, gen, prefix="")
    state = {k: v for k, v in full.items() if k.split(".")[0] in ("t_embedder", "blocks", "final_layer")}
    state |= {"x_embedder.proj.weight": _randn(d, c, 1, 1, gen=gen), "x_embedder.proj.bias": _randn(d, gen=gen),
              "z_embedder.1.weight": _randn(d, sizes.hidden, gen=gen), "z_embedder.1.bias": _randn(d, gen=gen),
              "pos_embed": _randn(1, 27 * 27, d, gen=gen)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model.mm_inv_projector.net." + k: v.to(torch.bfloat16) for k, v in state.items()}, path)
    return path
