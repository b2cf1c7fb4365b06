"""The SigLIP tower stored inside an LMM checkpoint, written as a transformers SigLIP vision folder that
`ross3d cache-latents --vision-tower` takes. Ross3D computes its features with the tower of the checkpoint it
starts from (its weights overwrite the raw tower when the checkpoint loads), which LLaVA-Video tuned: raw
siglip-so400m gives other features.

The releases store the tower under transformers-4.x names, `model.vision_tower.vision_tower.vision_model.*`
(LLaVA-NeXT; `[model.]vision_tower.vision_model.*` in transformers LLaVA-OneVision folders), with the last of the
full tower's layers already deleted (26 of so400m's 27) and no pooling head. The folder holds exactly those
tensors, unconverted (bf16 in the releases), under `vision_model.*`, and a config.json: the full tower's
SiglipVisionConfig with `num_hidden_layers` = the stored layers, `vision_use_head` false and
`ross3d_layers_used` = full layers - 1, so the cache runs the same layers as the original: the output of the last
stored layer, without the post-layernorm ("layer -2" of the full tower). A plain SigLIP folder of the same weights
(all layers, no `ross3d_layers_used`) gives the same features: the cache skips its last layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ross3d.errors import ConfigError, InputError
from ross3d.jsonfile import read_json

VISION_TOWER_DIR = "vision_tower"
LAYERS_USED_KEY = "ross3d_layers_used"
# where the tower's `vision_model.*` tensors sit in each checkpoint layout (first match wins)
TOWER_PREFIXES = ("model.vision_tower.vision_tower.", "model.vision_tower.", "vision_tower.")
# google/siglip-so400m-patch14-384, the tower of LLaVA-Video-7B-Qwen2 and Ross3D
SO400M_NAME = "siglip-so400m-patch14-384"
SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
          "num_channels": 3, "image_size": 384, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh",
          "layer_norm_eps": 1e-6, "attention_dropout": 0.0}
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")


@dataclass(frozen=True)
class TowerReport:
    """What was written: the folder, the stored and the full tower's layer counts, the layers the cache runs."""

    folder: Path
    stored_layers: int
    full_layers: int
    tensors: int

    @property
    def layers_used(self) -> int:
        return self.full_layers - 1

    def summary(self) -> str:
        return (f"vision tower: {self.stored_layers} of {self.full_layers} layers stored, {self.tensors} tensors; "
                f"the cache runs {self.layers_used} layers (no post-layernorm)")


def _tower_name(key: str) -> str | None:
    """`vision_model.*` for a key of the stored tower, else None."""
    for prefix in TOWER_PREFIXES:
        if key.startswith(prefix + "vision_model."):
            return key[len(prefix):]
    return None


def is_tower_key(key: str) -> bool:
    return _tower_name(key) is not None


def tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `vision_model.*` tensors of the tower in a checkpoint's raw state dict (empty when it stores none)."""
    return {name: value for key, value in state.items() if (name := _tower_name(key)) is not None}


def full_tower_config(path: str | Path | None = None) -> tuple[dict, str]:
    """(SiglipVisionConfig fields of the full tower, its name): so400m by default, else a config.json (a
    SiglipVisionConfig, or a SiglipConfig whose `vision_config` is used)."""
    if path is None:
        return dict(SO400M), SO400M_NAME
    path = Path(path)
    data = read_json(path)
    data = data.get("vision_config", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or "hidden_size" not in data or "num_hidden_layers" not in data:
        raise InputError(path, "not a SiglipVisionConfig (needs hidden_size, num_hidden_layers, ...)")
    fields = {k: v for k, v in data.items() if not k.startswith("_") and k not in
              ("model_type", "architectures", "transformers_version", "torch_dtype", "dtype", LAYERS_USED_KEY)}
    if LAYERS_USED_KEY in data:  # a vision_tower/config.json written here: the full tower has one layer more
        fields["num_hidden_layers"] = int(data[LAYERS_USED_KEY]) + 1
    return fields, str(path)


def _expected_shapes(fields: dict) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the full tower (no head), keyed `vision_model.*`, built on the meta device."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    with torch.device("meta"):
        model = SiglipVisionModel(SiglipVisionConfig(**{**fields, "vision_use_head": False}))
    shapes = {}
    for key, value in model.state_dict().items():
        key = key if key.startswith("vision_model.") else "vision_model." + key  # transformers 5 drops the prefix
        shapes[key] = tuple(value.shape)
    return shapes


def check_tower(tower: dict[str, torch.Tensor], fields: dict, name: str, source: str) -> int:
    """Check the stored tensors against the full tower's shapes; returns the number of stored layers."""
    hint = "; pass --vision-config CONFIG.json (a SiglipVisionConfig of the full tower) for another architecture"
    expected = _expected_shapes(fields)
    full = int(fields["num_hidden_layers"])
    layers = {int(m.group(1)) for k in tower if (m := _LAYER.search(k))}
    stored = max(layers) + 1 if layers else 0
    if stored > full:
        raise InputError(source, f"the vision tower stores {stored} layers, {name} has {full}{hint}")
    if stored < full - 1:
        raise InputError(source, f"the vision tower stores {stored} layers; the features are the output of layer "
                                 f"{full - 1} of {name}{hint}")
    for key, value in sorted(tower.items()):
        if key.startswith("vision_model.head."):
            continue
        if key not in expected:
            raise InputError(source, f"vision tower tensor {key!r} is not part of {name}{hint}")
        if tuple(value.shape) != expected[key]:
            raise InputError(source, f"vision tower tensor {key}: shape {tuple(value.shape)} in the checkpoint, "
                                     f"{name} expects {expected[key]}{hint}")
    needed = [k for k in expected if not k.startswith("vision_model.post_layernorm.")
              and ((m := _LAYER.search(k)) is None or int(m.group(1)) < stored)]
    missing = [k for k in needed if k not in tower]
    if missing:
        raise InputError(source, f"vision tower incomplete: {len(missing)} tensors missing, e.g. {missing[0]}")
    return stored


def write_vision_tower(tower: dict[str, torch.Tensor], folder: str | Path, fields: dict, name: str,
                       source: str) -> TowerReport:
    """Write `tower` (`vision_model.*` tensors) as a transformers SigLIP vision folder, after the shape checks."""
    from safetensors.torch import save_file
    from transformers import SiglipVisionConfig

    if not tower:
        raise ConfigError(f"{source}: the checkpoint stores no vision tower")
    stored = check_tower(tower, fields, name, source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kept = {k: v.contiguous() for k, v in tower.items() if not k.startswith("vision_model.head.")}
    config = SiglipVisionConfig(**{**fields, "num_hidden_layers": stored, "vision_use_head": False,
                                   LAYERS_USED_KEY: int(fields["num_hidden_layers"]) - 1})
    config.architectures = ["SiglipVisionModel"]
    config.save_pretrained(str(folder))
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return TowerReport(folder, stored, int(fields["num_hidden_layers"]), len(kept))
