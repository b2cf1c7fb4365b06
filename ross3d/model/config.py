"""Ross3D model configuration: a transformers `PreTrainedConfig` (`model_type: ross3d`) holding every size and
option, and the `tiny` / `7b` presets.

All sizes the trainer depends on (frames per sample, patch and pooled grids, latent grids) are fields, so tiny
configs can use fewer frames. The `7b` preset holds the paper's sizes (docs/original-model.md sections 1-6).
transformers turns every `PreTrainedConfig` subclass into a keyword-only dataclass, so the fields below are its
fields; `field_names()` lists ours without transformers' common ones. Every construction is validated.
A config.json in the format before `PreTrainedConfig` (`{"model_type": "ross3d", "ross3d": {fields}}`) still loads:
the nested `ross3d` key is read as the fields (docs/model.md, "Loading with transformers").
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import field

from transformers import PreTrainedConfig

from ross3d.errors import ConfigError
from ross3d.model.diffusion import check_prediction_type

MASK_SCHEDULES = ("step", "sample")
VIEW_CONDITIONS = ("pooled", "pooled+own")
IMAGE_TOKEN_ID = -200  # the placeholder id spliced out by the model, as the original's IMAGE_TOKEN_INDEX


class Ross3DConfig(PreTrainedConfig):
    """Every size and option of the Ross3D model; `validate()` checks consistency, `from_fields` reads a dict of
    exactly these fields, `save_pretrained`/`from_pretrained` (transformers) persist it as config.json."""

    model_type = "ross3d"

    # language model (Qwen2)
    vocab_size: int = 152064
    hidden_size: int = 3584
    num_layers: int = 28
    num_heads: int = 28
    num_kv_heads: int = 4
    intermediate_size: int = 18944
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # std of a fresh language model's weights (Qwen2's default; docs/demo.md)
    # vision input (cached SigLIP features) and token layout
    vision_dim: int = 1152
    n_frames: int = 32
    patch_grid: int = 27  # SigLIP patches per side (27x27 = 729)
    pool_grid: int = 14  # pooled tokens per side (14x14 = 196)
    # 3D position encoding (discretisation of box centres; token voxels come discretised from prep)
    voxel_size: float = 0.1
    xyz_min: tuple[float, float, float] = (-15.0, -15.0, -5.0)
    xyz_max: tuple[float, float, float] = (15.0, 15.0, 5.0)
    # view masking
    mask_ratio: float = 0.25
    mask_schedule: str = "step"
    # denoiser (DiT)
    latent_channels: int = 16  # VAE latent channels; the denoiser sees 4x that after 2x2 grouping
    bev_latent_grid: int = 54  # BEV VAE latent side; grouped to 27
    denoiser_dim: int = 1024
    denoiser_depth: int = 3
    denoiser_heads: int = 16
    denoiser_mlp_ratio: float = 4.0
    diffusion_steps: int = 1000
    view_repeat: int = 0  # (t, noise) draws per masked view; 0 = n_frames // n_masked as the original (4)
    prediction_type: str = "epsilon"  # the denoiser predicts eps (the original) or v ("v_prediction")
    # what conditions a masked view's reconstruction: "pooled", the original's one pooled condition of the visible
    # frames for every masked view of a sample; "pooled+own", plus that view's own hidden states token by token
    # (docs/model.md, decision 3)
    view_condition: str = "pooled"
    latent_shift: float = 0.1159
    latent_scale: float = 0.3611
    lm_labelled_only: bool = True  # False: lm_head over every position, as the original (benchmark baseline)
    # grounding
    ground_temperature: float = 0.07
    # token ids (set when the added tokens exist in the tokenizer)
    image_token_id: int = IMAGE_TOKEN_ID
    ground_token_id: int = -1
    coord_token_id: int = -1
    extra: dict = field(default_factory=dict)

    def __post_init__(self, **kwargs):
        legacy = kwargs.pop("ross3d", None)  # config.json before PreTrainedConfig: the fields nested under "ross3d"
        if legacy is not None:
            for key, value in _checked(legacy).items():
                setattr(self, key, value)
        self.xyz_min, self.xyz_max = tuple(self.xyz_min), tuple(self.xyz_max)
        super().__post_init__(**kwargs)
        self.validate()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The Ross3D fields, without the ones every transformers config has."""
        return tuple(inspect.get_annotations(Ross3DConfig))

    @classmethod
    def from_fields(cls, data: dict) -> Ross3DConfig:
        """A validated config from a dict of Ross3D fields; an unknown key is a ConfigError."""
        return cls(**_checked(data))

    def fields(self) -> dict:
        """The Ross3D fields and their values."""
        return {name: getattr(self, name) for name in self.field_names()}

    def __eq__(self, other) -> bool:
        """Equal Ross3D fields (transformers' bookkeeping, e.g. `transformers_version`, does not count)."""
        return isinstance(other, Ross3DConfig) and self.fields() == other.fields()

    @property
    def pooled_tokens(self) -> int:
        return self.pool_grid * self.pool_grid

    @property
    def visual_len(self) -> int:
        """Visual tokens spliced per sample: every row of pooled tokens is followed by one newline token."""
        return self.n_frames * self.pool_grid * (self.pool_grid + 1)

    @property
    def n_masked(self) -> int:
        """Frames masked in a masking sample: V - int(V * (1 - ratio)), as the original (8 of 32)."""
        return self.n_frames - int(self.n_frames * (1 - self.mask_ratio))

    @property
    def denoiser_channels(self) -> int:
        return self.latent_channels * 4

    @property
    def own_view_condition(self) -> bool:
        """`view_condition: pooled+own`: masked views also conditioned on their own states, laid out last."""
        return self.view_condition == "pooled+own"

    @property
    def bev_grid(self) -> int:
        return self.bev_latent_grid // 2

    def validate(self) -> Ross3DConfig:
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ConfigError(f"model.mask_schedule: {self.mask_schedule!r} is not one of {MASK_SCHEDULES}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"model.mask_ratio: {self.mask_ratio} must lie in [0, 1)")
        if self.mask_ratio > 0 and self.n_masked < 1:
            raise ConfigError(f"model.mask_ratio: {self.mask_ratio} masks no frame of {self.n_frames}")
        check_prediction_type(self.prediction_type)
        if self.view_condition not in VIEW_CONDITIONS:
            raise ConfigError(f"model.view_condition: {self.view_condition!r} is not one of {VIEW_CONDITIONS}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError("model.num_heads: must divide hidden_size and be a multiple of num_kv_heads")
        if self.denoiser_dim % self.denoiser_heads:
            raise ConfigError("model.denoiser_heads: must divide denoiser_dim")
        if self.bev_latent_grid % 2:
            raise ConfigError(f"model.bev_latent_grid: {self.bev_latent_grid} must be even (2x2 grouping)")
        if self.hidden_size < 3:
            raise ConfigError("model.hidden_size: must be at least 3 for the 3D position encoding")
        if not self.initializer_range > 0:
            raise ConfigError(f"model.initializer_range: must be > 0, got {self.initializer_range}")
        return self

    def replace(self, **changes) -> Ross3DConfig:
        """A validated copy with the given Ross3D fields changed."""
        new = copy.deepcopy(self)
        for key, value in _checked(changes).items():
            setattr(new, key, tuple(value) if key in ("xyz_min", "xyz_max") else value)
        return new.validate()


def _checked(data: dict) -> dict:
    """`data` when all its keys are Ross3D fields; a ConfigError naming the others."""
    unknown = sorted(set(data) - set(Ross3DConfig.field_names()))
    if unknown:
        raise ConfigError(f"model config: unknown keys {unknown}")
    return dict(data)


PRESETS: dict[str, Ross3DConfig] = {
    "7b": Ross3DConfig(),
    "tiny": Ross3DConfig(
        vocab_size=512,
        hidden_size=96,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=192,
        max_position_embeddings=4096,
        vision_dim=32,
        n_frames=8,
        denoiser_dim=64,
        denoiser_depth=2,
        denoiser_heads=4,
    ),
}


def preset(name: str, **overrides) -> Ross3DConfig:
    """A copy of a named preset with field overrides applied and validated."""
    if name not in PRESETS:
        raise ConfigError(f"model preset: {name!r} is not one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
