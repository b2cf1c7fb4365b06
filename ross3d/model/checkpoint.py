"""Saving and loading Ross3D weights: our safetensors + config format, transformers LLaVA-OneVision directories,
the original LLaVA-NeXT-format checkpoints (key map below), and the 2D Ross `mm_inv_projector.bin` denoiser init.

Our format is transformers' (`Ross3D.save_pretrained`): DIR/config.json (`model_type: ross3d` and the Ross3DConfig
fields) and DIR/model.safetensors, or 5 GB shards `model-0000i-of-0000n.safetensors` listed in
model.safetensors.index.json; `import ross3d` lets `AutoModel.from_pretrained(DIR)` load it. The format before
(config.json `{"model_type": "ross3d", "ross3d": {fields}}`, one model.safetensors) still loads. `load_model` builds the language model on the meta device and assigns the stored tensors, so a 7B model never gets a
random initialisation; parameters absent from a partial checkpoint (denoiser, grounding head, mask token of a
LLaVA-Video checkpoint) keep their fresh Ross3D initialisation and are listed in the report. A missing LLM tensor
is an error.

LLaVA-NeXT (original Ross3D / LLaVA-Video) -> ours, `LLAVA_NEXT_KEY_MAP` (prefix rewrites, first match wins):
    model.embed_tokens.* / model.layers.* / model.norm.*  -> llm.model.*
    lm_head.weight                                        -> llm.lm_head.weight
    model.mm_projector.0.* / model.mm_projector.2.*       -> projector.linear_1.* / projector.linear_2.*
    model.image_newline / model.mask_token                -> image_newline / mask_token
    model.mm_inv_projector.net.*                          -> denoiser.*
    [model.]ground_head_obj.* / ground_head_query.*       -> ground_head.obj.* / ground_head.query.*
    [model.]ground_head_zero_target                       -> ground_head.zero_target
    model.vision_tower.*, model.mm_pixel_decoder.*, model.vision_resampler.*  -> dropped (frozen encoders are
                                                             used only by the cache stage), reported

`convert_checkpoint` also writes what the later stages need beside the weights: the tokenizer (any release layout,
read by `load_tokenizer`) with `<ground>`/`<coord>` added and mean-initialised when the checkpoint lacks them (their
ids in the config), and DST/vision_tower, the SigLIP tower the checkpoint stores (ross3d.model.vision_tower).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ross3d.errors import ConfigError, InputError
from ross3d.model.config import PRESETS, Ross3DConfig
from ross3d.model.vision_tower import TowerReport
from ross3d.progress import NullProgress, Progress

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
MAX_SHARD_SIZE = "5GB"

LLAVA_NEXT_KEY_MAP: tuple[tuple[str, str | None], ...] = (
    ("model.embed_tokens.", "llm.model.embed_tokens."),
    ("model.layers.", "llm.model.layers."),
    ("model.norm.", "llm.model.norm."),
    ("lm_head.", "llm.lm_head."),
    ("model.mm_projector.0.", "projector.linear_1."),
    ("model.mm_projector.2.", "projector.linear_2."),
    ("model.image_newline", "image_newline"),
    ("model.mask_token", "mask_token"),
    ("model.mm_inv_projector.net.", "denoiser."),
    ("model.ground_head_obj.", "ground_head.obj."),
    ("model.ground_head_query.", "ground_head.query."),
    ("model.ground_head_zero_target", "ground_head.zero_target"),
    ("ground_head_obj.", "ground_head.obj."),
    ("ground_head_query.", "ground_head.query."),
    ("ground_head_zero_target", "ground_head.zero_target"),
    ("model.vision_tower.", None),
    ("model.mm_pixel_decoder.", None),
    ("model.vision_resampler.", None),
)

# transformers LLaVA-OneVision, both the v4 layout (language_model.model.*) and the v5 layout (model.language_model.*)
ONEVISION_KEY_MAP: tuple[tuple[str, str | None], ...] = (
    ("model.language_model.", "llm.model."),
    ("language_model.model.", "llm.model."),
    ("language_model.lm_head.", "llm.lm_head."),
    ("lm_head.", "llm.lm_head."),
    ("model.multi_modal_projector.", "projector."),
    ("multi_modal_projector.", "projector."),
    ("model.image_newline", "image_newline"),
    ("image_newline", "image_newline"),
    ("model.vision_tower.", None),
    ("vision_tower.", None),
)


@dataclass
class LoadReport:
    """What a load did: `dropped` source keys deliberately skipped, `unexpected` source keys with no target,
    `fresh` model parameters not in the source (they keep their initialisation), `resized` tensors."""

    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.loaded)} loaded, {len(self.fresh)} freshly initialised, {len(self.dropped)} dropped, "
                f"{len(self.unexpected)} unexpected")


def map_keys(state: dict[str, torch.Tensor], key_map: Iterable[tuple[str, str | None]],
             report: LoadReport) -> dict[str, torch.Tensor]:
    """Rename keys by the first matching prefix rule; None targets are dropped, unmatched keys are unexpected."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for src, dst in key_map:
            if key.startswith(src):
                if dst is None:
                    report.dropped.append(key)
                else:
                    out[dst + key[len(src):]] = value
                break
        else:
            report.unexpected.append(key)
    return out


# ------------------------------------------------------------------------------------------------- reading files
def read_state_dict(folder: Path, progress: Progress = NullProgress()) -> dict[str, torch.Tensor]:
    """All tensors of a transformers-style folder: model.safetensors, sharded safetensors, or pytorch_model*.bin."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise InputError(folder, "no *.safetensors or pytorch_model*.bin weights found")
    state: dict[str, torch.Tensor] = {}
    progress.start("read", len(files), "reading weights", unit="files")
    for path in files:
        try:
            part = load_file(str(path)) if path.suffix == ".safetensors" else \
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # noqa: BLE001 - any decoding failure is a bad input file
            raise InputError(path, f"cannot read weights ({err})") from err
        state.update(part)
        progress.advance("read")
    progress.finish("read")
    return state


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputError(path, "missing") from err
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from err


# ------------------------------------------------------------------------------------------------- our format
def save_model(model, folder: str | Path, tokenizer=None, max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
    """`model.save_pretrained` (config.json, weights in shards of at most `max_shard_size`) and the tokenizer, when
    given, into `folder`."""
    folder = Path(folder)
    model.save_pretrained(str(folder), max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def read_config(folder: Path) -> Ross3DConfig:
    """The Ross3DConfig of a ross3d model folder, in today's config.json or the nested format before it."""
    import dataclasses

    path = folder / CONFIG_NAME
    data = read_json(path)
    if data.get("model_type") != "ross3d":
        raise InputError(path, "not a ross3d model config (convert it with `ross3d convert-checkpoint`)")
    known = {f.name for f in dataclasses.fields(Ross3DConfig)} | {"model_type", "ross3d"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(path, f"unknown keys {unknown}")
    try:
        return Ross3DConfig(**data)
    except (ConfigError, TypeError, ValueError) as err:
        raise InputError(path, str(err)) from None


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a ross3d model folder: every shard its index lists, or model.safetensors."""
    index = folder / WEIGHTS_INDEX_NAME
    if not index.is_file():
        if not (folder / WEIGHTS_NAME).is_file():
            raise InputError(folder / WEIGHTS_NAME, "missing")
        return [folder / WEIGHTS_NAME]
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(index, "no weight_map")
    files = [folder / name for name in sorted(set(weight_map.values()))]
    for path in files:
        if not path.is_file():
            raise InputError(path, f"missing (a shard {WEIGHTS_INDEX_NAME} lists)")
    return files


def build_from_state(config: Ross3DConfig, state: dict[str, torch.Tensor], report: LoadReport | None = None):
    """A Ross3D whose LLM (built on the meta device) takes `state`'s tensors; other modules keep fresh init
    where `state` lacks them. Returns (model, report)."""
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    from ross3d.model.ross3d import Ross3D, qwen2_config

    report = report or LoadReport()
    with torch.device("meta"):
        llm = Qwen2ForCausalLM(qwen2_config(config))
    model = Ross3D(config, llm=llm)
    expected = dict(model.state_dict())
    if config.tie_word_embeddings:
        state = {k: v for k, v in state.items() if k != "llm.lm_head.weight"}
        expected.pop("llm.lm_head.weight", None)
    for key in sorted(set(state) - set(expected)):
        report.unexpected.append(key)
    for key, value in expected.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise InputError(key, f"shape {tuple(state[key].shape)} in the checkpoint, "
                                  f"model expects {tuple(value.shape)}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    model.llm.model.rotary_emb = Qwen2RotaryEmbedding(config=model.llm.config)
    if config.tie_word_embeddings:
        model.llm.tie_weights()
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise InputError("checkpoint", f"{len(left)} language-model tensors missing, e.g. {left[0]}")
    report.loaded = sorted(k for k in state if k in expected)
    report.fresh = sorted(k for k in expected if k not in state)
    return model, report


def load_model(folder: str | Path, dtype: torch.dtype | None = None):
    """Load a ross3d model folder (`save_model`, `convert_checkpoint`, the format before); returns (model, report)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder)
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        try:
            state.update(load_file(str(path)))
        except Exception as err:  # noqa: BLE001 - any decoding failure is a bad input file
            raise InputError(path, f"cannot read weights ({err})") from None
    model, report = build_from_state(config, state)
    return (model.to(dtype) if dtype else model), report


# ------------------------------------------------------------------------------------------------- other formats
def _llm_fields(text: dict) -> dict:
    """Ross3DConfig fields from a Qwen2 (text) config dict."""
    rope = text.get("rope_theta") or (text.get("rope_parameters") or {}).get("rope_theta") or 1000000.0
    return {"vocab_size": text["vocab_size"], "hidden_size": text["hidden_size"],
            "num_layers": text["num_hidden_layers"], "num_heads": text["num_attention_heads"],
            "num_kv_heads": text.get("num_key_value_heads", text["num_attention_heads"]),
            "intermediate_size": text["intermediate_size"], "rope_theta": float(rope),
            "rms_norm_eps": text.get("rms_norm_eps", 1e-6),
            "max_position_embeddings": text.get("max_position_embeddings", 32768),
            "tie_word_embeddings": text.get("tie_word_embeddings", False)}


def _denoiser_fields(state: dict[str, torch.Tensor], base: Ross3DConfig, prefix: str = "denoiser.") -> dict:
    """Denoiser sizes read off its weights (width, depth, latent channels; keys `{prefix}final_layer.*`, ...); heads
    stay the base config's unless the width differs, then head dim 64 as the original."""
    if f"{prefix}final_layer.linear.weight" not in state:
        return {}
    channels, dim = state[f"{prefix}final_layer.linear.weight"].shape
    depth = len({k[len(prefix):].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")})
    heads = base.denoiser_heads if dim == base.denoiser_dim else max(dim // 64, 1)
    return {"denoiser_dim": dim, "denoiser_depth": depth, "latent_channels": channels // 4, "denoiser_heads": heads}


def detect_format(folder: Path) -> str:
    """`ross3d`, `llava-onevision` (transformers) or `llava-next` (original LLaVA-NeXT / Ross3D) from config.json."""
    data = read_json(folder / CONFIG_NAME)
    if data.get("model_type") == "ross3d":
        return "ross3d"
    if data.get("model_type") == "llava_onevision" or "text_config" in data:
        return "llava-onevision"
    if "mm_hidden_size" in data or str(data.get("model_type", "")).startswith("llava"):
        return "llava-next"
    raise InputError(folder / CONFIG_NAME, f"unknown checkpoint type (model_type {data.get('model_type')!r})")


def source_state(folder: Path, base: Ross3DConfig | None = None, progress: Progress = NullProgress()):
    """Read a LLaVA-OneVision or LLaVA-NeXT folder: -> (Ross3DConfig, mapped state dict, report, the stored vision
    tower's `vision_model.*` tensors)."""
    from ross3d.model.vision_tower import tower_state

    fmt = detect_format(folder)
    data = read_json(folder / CONFIG_NAME)
    report = LoadReport()
    if fmt == "ross3d":
        raise InputError(folder, "already a ross3d checkpoint")
    state = read_state_dict(folder, progress)
    if fmt == "llava-onevision":
        vision = data.get("vision_config", {}).get("hidden_size", 1152)
        fields = _llm_fields(data["text_config"]) | {"vision_dim": vision}
        mapped = map_keys(state, ONEVISION_KEY_MAP, report)
    else:
        fields = _llm_fields(data) | {"vision_dim": data.get("mm_hidden_size", 1152)}
        mapped = map_keys(state, LLAVA_NEXT_KEY_MAP, report)
        fields |= {"ground_temperature": data.get("ground_head_temperature", 0.07)}
    base = base or PRESETS["7b"]
    fields |= _denoiser_fields(mapped, base)
    if "llm.model.embed_tokens.weight" in mapped:
        fields["vocab_size"] = mapped["llm.model.embed_tokens.weight"].shape[0]
    config = base.replace(**fields)
    return config, mapped, report, tower_state(state)


def load_llava_onevision(folder: str | Path, base: Ross3DConfig | None = None):
    """A Ross3D from a transformers LLaVA-OneVision checkpoint folder (e.g. LLaVA-Video-7B-Qwen2 in HF format):
    LLM, projector and image_newline loaded; mask token, denoiser and grounding head freshly initialised."""
    folder = Path(folder)
    if detect_format(folder) != "llava-onevision":
        raise InputError(folder / CONFIG_NAME, "not a transformers LLaVA-OneVision config")
    config, state, report, _ = source_state(folder, base)
    return build_from_state(config, state, report)


@dataclass
class ConvertReport:
    """What `convert_checkpoint` wrote: the weights' load report, the `<ground>`/`<coord>` ids (and which of them
    were added), the vision tower folder (None when the checkpoint stores no tower) and the 2D Ross init's report."""

    load: LoadReport
    token_ids: dict[str, int]
    added_tokens: list[str]
    tower: TowerReport | None
    ross2d: LoadReport | None = None  # the denoiser's initialisation from a 2D Ross file


def convert_checkpoint(src: str | Path, dst: str | Path, base: Ross3DConfig | None = None,
                       progress: Progress = NullProgress(), vision_config: str | Path | None = None,
                       mm_inv_projector: str | Path | None = None) -> ConvertReport:
    """Convert a LLaVA-NeXT (original) or LLaVA-OneVision checkpoint folder to our format in `dst`: weights, config,
    the tokenizer with `<ground>`/`<coord>` (added with mean-initialised rows when absent) and DST/vision_tower (the
    stored SigLIP tower; `vision_config` is the full tower's config.json, default siglip-so400m-patch14-384).
    Parameters missing from the source are written freshly initialised and listed in the report; with
    `mm_inv_projector` (a 2D Ross file) a denoiser the checkpoint lacks takes its sizes and weights from that file."""
    from ross3d.model.tokenizer import load_tokenizer
    from ross3d.model.tokens import ADDED_TOKENS, add_model_tokens
    from ross3d.model.vision_tower import VISION_TOWER_DIR, full_tower_config, is_tower_key, write_vision_tower

    src, dst = Path(src), Path(dst)
    detect_format(src)  # bad inputs fail before the weights are read
    fields, tower_name = full_tower_config(vision_config)
    tokenizer = load_tokenizer(src)
    ross2d = read_weights_file(mm_inv_projector) if mm_inv_projector is not None else None
    had = {tok for tok in ADDED_TOKENS if tok in tokenizer.get_vocab()}
    config, state, report, tower = source_state(src, base, progress)
    if ross2d is not None:
        if any(k.startswith("denoiser.") for k in state):
            raise ConfigError(f"--mm-inv-projector: {src} holds a trained denoiser (model.mm_inv_projector.*); the "
                              "2D Ross initialisation is for a checkpoint without one (LLaVA-Video)")
        names = {_ross2d_name(k): v for k, v in ross2d.items()}
        config = config.replace(**_denoiser_fields(names, base or PRESETS["7b"], prefix=""))
    model, report = build_from_state(config, state, report)
    ross2d_report = None
    if ross2d is not None:
        ross2d_report = init_denoiser_from_ross2d(model, ross2d, str(mm_inv_projector))
        report.fresh = [k for k in report.fresh if k.removeprefix("denoiser.") not in ross2d_report.loaded]
    ids = add_model_tokens(model, tokenizer)
    tower_report = None
    if tower:
        tower_report = write_vision_tower(tower, dst / VISION_TOWER_DIR, fields, tower_name, str(src))
        report.dropped = [k for k in report.dropped if not is_tower_key(k)]
    save_model(model, dst, tokenizer)
    result = ConvertReport(report, ids, [tok for tok in ADDED_TOKENS if tok not in had], tower_report, ross2d_report)
    log.info("converted %s -> %s: %s", src, dst, report.summary())
    return result


# ------------------------------------------------------------------------------------------------- 2D Ross init
def _resize_table(table: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, n*n, d) position table -> (1, grid*grid, d), bilinear as an image (align_corners False)."""
    n = int(round(table.shape[1] ** 0.5))
    if n == grid:
        return table
    img = table.reshape(1, n, n, -1).permute(0, 3, 1, 2).float()
    img = F.interpolate(img, size=(grid, grid), mode="bilinear", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(table.dtype)


def _ross2d_name(key: str) -> str:
    """A 2D Ross key without its `[model.]mm_inv_projector.net.` prefix."""
    for prefix in ("model.mm_inv_projector.net.", "mm_inv_projector.net.", "net."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of one .safetensors or torch-pickled .bin file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputError(path, "missing") from err
    except Exception as err:  # noqa: BLE001 - any decoding failure is a bad input file
        raise InputError(path, f"cannot read weights ({err})") from err


def ross2d_denoiser_state(state: dict[str, torch.Tensor], view_grid: int, bev_grid: int,
                          report: LoadReport) -> dict[str, torch.Tensor]:
    """Map a 2D Ross `RossDenoiser` state (keys `[model.]mm_inv_projector.net.*`) to our denoiser's names.

    `pos_embed` -> `pos_embed_view` (resized) and `pos_embed_bev` (resized if needed); `x_embedder.*` and the
    per-token `z_embedder.1.*` (SiLU-Linear) are duplicated to the view and BEV branches; the latter become the
    poolers' `proj.1.*`, the kv projection (the original dropped them by a name mismatch).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = _ross2d_name(key)
        if name == "pos_embed":
            out["pos_embed_view"] = _resize_table(value, view_grid)
            out["pos_embed_bev"] = _resize_table(value, bev_grid)
            report.resized += [f"{key} -> pos_embed_view", f"{key} -> pos_embed_bev"]
        elif name.startswith("x_embedder."):
            rest = name[len("x_embedder."):]
            out[f"x_embedder_view.{rest}"] = out[f"x_embedder_bev.{rest}"] = value
        elif name.startswith("z_embedder.1."):
            rest = name[len("z_embedder.1."):]
            out[f"z_embedder_view.proj.1.{rest}"] = out[f"z_embedder_bev.proj.1.{rest}"] = value
        elif name.split(".")[0] in ("t_embedder", "blocks", "final_layer"):
            out[name] = value
        else:
            report.unexpected.append(key)
    return out


def init_denoiser_from_ross2d(model, source: str | Path | dict[str, torch.Tensor], name: str = "") -> LoadReport:
    """Initialise `model.denoiser` from a 2D Ross `mm_inv_projector.bin` (or .safetensors, or its tensors); report
    every key that did not match (unexpected source keys, denoiser parameters left at their init, shape
    mismatches)."""
    raw = source if isinstance(source, dict) else read_weights_file(source)
    name = name or ("mm_inv_projector" if isinstance(source, dict) else str(source))
    report = LoadReport()
    cfg = model.config
    mapped = ross2d_denoiser_state(raw, cfg.pool_grid, cfg.bev_grid, report)
    own = model.denoiser.state_dict()
    usable = {}
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.unexpected.append(f"{key} (shape {tuple(value.shape)} != {tuple(own[key].shape)})")
        else:
            usable[key] = value
    model.denoiser.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.fresh = sorted(set(own) - set(usable))
    for key in report.unexpected + report.fresh:
        log.warning("%s: %s %s", name, "unmatched source key" if key in report.unexpected
                    else "not initialised from the file:", key)
    return report
