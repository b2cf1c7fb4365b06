"""The trainer's typed config tree (`ross3d train CONFIG.yaml --set key=value`).

configs/*.yaml hold deltas against these defaults; `load_train_config` type-checks every key (an unknown key or a
bad value raises ConfigError naming the dotted key) and `validate` checks ranges and cross-field rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ross3d.config_tree import load_config
from ross3d.errors import ConfigError
from ross3d.prep.qa.schema import TASKS, VISION_ONLY

# Qwen2's projection layers: LoRA's default targets (every attention and MLP projection, as LLaVA's LoRA recipe)
QWEN2_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# the model's top-level parts, as the original's `mm_tunable_parts` (docs/original-model.md 8.4)
TRAIN_PARTS = ("projector", "llm", "image_newline", "mask_token", "denoiser", "ground_head")


@dataclass
class DataConfig:
    prep_dir: str = "runs/demo/prep"  # holds samples.parquet
    cache_dir: str = "runs/demo/cache"
    split: str = "train"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    strategy: Literal["uniform", "max-coverage"] = "uniform"
    spatial_instruction: bool = False  # the original's optional sentence before the first question
    grouping: Literal["task", "shuffle"] = "task"  # task: every optimizer step holds one task group (original)
    # random: samples in a seeded random order within the grouping (original); scene_local: in runs of one scene,
    # so a loader worker reads a scene block once per run (docs/scene-local.md; the plan then also depends on
    # num_workers: resume with the same value)
    order: Literal["random", "scene_local"] = "random"
    run_length: int = 8  # scene_local: consecutive samples of one scene in a loader worker
    scene_buffer: int = 2  # scene_local: scenes open at once per task group (their runs interleave)
    # samples of one scene and task packed into one multi-turn conversation (ross3d/train/packing.py): the visual
    # tokens are read once per K questions; 1 = one sample per conversation (the original)
    pack_turns: int = 1
    # times every epoch lists a task's training rows, each copy packed on its own (ross3d/train/packing.py); a task
    # not named: once (docs/demo.md, A masked view's own states and repeated grounding rows)
    task_repeat: dict[str, int] = field(default_factory=dict)
    num_workers: int = 2
    prefetch_factor: int = 2
    pin_memory: bool = True  # only takes effect on GPU
    scene_cache: int = 4  # scenes kept in memory per loader worker
    # the semi-supervised protocol (docs/vision-only.md): only a seeded fraction of the training scenes keep their
    # text samples; with unlabelled_as_vision_only the others become vision-only samples (reconstruction losses)
    labelled_fraction: float = 1.0
    labelled_seed: int = 0
    unlabelled_as_vision_only: bool = False


@dataclass
class LoraOptions:
    """LoRA on the language model's projections (ross3d.train.lora); defaults from LLaVA's LoRA recipe
    (docs/original-model.md 8.4). `export`: merged weights (what eval loads), the adapter in peft's format, or both."""

    r: int = 128
    alpha: float = 256.0
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: list(QWEN2_PROJECTIONS))
    export: Literal["merged", "adapter", "both"] = "merged"


@dataclass
class LanguageWarmup:
    """Next-token steps of a fresh language model on the training texts before the Ross3D steps
    (ross3d.train.language_warmup): `steps` AdamW steps of `batch` texts at the constant `lr`, clipped at
    optim.grad_clip."""

    steps: int = 500
    batch: int = 16
    lr: float = 1e-3
    # grounding texts name their referents' categories after each `<ground>` (objects.parquet labels, "nothing" for
    # an empty target), so the `<ground>` state learns to gather the referring expression (docs/demo.md, runs 47-49)
    ground_labels: bool = False


@dataclass
class ModelConfig:
    preset: str = "tiny"  # used when init is null: fresh random weights of this size preset
    overrides: list[str] = field(default_factory=list)  # Ross3DConfig `field=value` changes to the preset
    init: str | None = None  # a ross3d model folder (safetensors + config + tokenizer) to start from
    tokenizer_vocab: int = 400  # fresh runs without init: BPE vocabulary trained on the samples' texts
    mask_ratio: float = 0.25
    mask_schedule: Literal["step", "sample"] = "step"
    gradient_checkpointing: bool = False
    train_parts: list[str] = field(default_factory=lambda: list(TRAIN_PARTS))  # the parts that train at all
    lora: LoraOptions | None = None  # set (`model.lora: {}` for the defaults): the LLM trains through LoRA
    language_warmup: LanguageWarmup | None = None  # set: a fresh LM first reads the training texts alone


# parts trained at their own peak lr when set: parameter-name prefix -> the OptimConfig field holding that lr
PART_LR_FIELDS = {"denoiser.": "denoiser_lr", "ground_head.": "ground_lr"}


@dataclass
class OptimConfig:
    name: Literal["adamw", "adamw_8bit"] = "adamw"  # adamw_8bit: bitsandbytes' 8-bit AdamW, GPU only
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_ratio: float = 0.03  # linear warmup over this fraction of the steps, then cosine to 0
    grad_clip: float = 1.0
    denoiser_lr: float | None = None  # the reconstruction denoiser's peak lr (same schedule); null: lr
    ground_lr: float | None = None  # the grounding head's peak lr (same schedule); null: lr


@dataclass
class TrainConfig:
    """Everything one run needs; `output_dir` receives log.jsonl, checkpoints/, config.yaml and the loss curve."""

    output_dir: str = "runs/train"
    seed: int = 0
    micro_batch: int = 1
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int = 0  # > 0: stop after this many optimizer steps (the schedule spans them)
    zero_stage: Literal[2, 3] = 2
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # a DeepSpeed JSON merged into the computed config (offload, stage-3 knobs); keys the loop sets must agree
    deepspeed_config: str | None = None
    save_every: int = 0  # optimizer steps between resumable checkpoints; 0: only at the end
    keep_checkpoints: int = 2
    log_every: int = 1
    tensorboard: bool = True
    wandb_project: str | None = None
    visualize_every: int = 0  # > 0: reconstruction picture of a held-out sample every N steps, beside log.jsonl
    visualize_vae: str | None = None  # the VAE folder the cache was built with (checked against its fingerprint)
    visualize_sample: str | None = None  # sample_id to show; default: the first cached one outside data.split
    visualize_steps: int = 50  # DDIM steps of the preview's sampling (the 1000-step schedule respaced)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> TrainConfig:
        positive = {"micro_batch": self.micro_batch, "grad_accum": self.grad_accum, "epochs": self.epochs,
                    "log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints,
                    "visualize_steps": self.visualize_steps,
                    "data.prefetch_factor": self.data.prefetch_factor, "data.scene_cache": self.data.scene_cache,
                    "data.run_length": self.data.run_length, "data.scene_buffer": self.data.scene_buffer,
                    "data.pack_turns": self.data.pack_turns, "model.tokenizer_vocab": self.model.tokenizer_vocab}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}: must be >= 1, got {value}")
        for key, value in {"max_steps": self.max_steps, "save_every": self.save_every,
                           "visualize_every": self.visualize_every,
                           "data.num_workers": self.data.num_workers, "optim.weight_decay": self.optim.weight_decay,
                           "optim.grad_clip": self.optim.grad_clip}.items():
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
        if not self.optim.lr > 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.optim.lr}")
        for key in PART_LR_FIELDS.values():
            value = getattr(self.optim, key)
            if value is not None and not value > 0:
                raise ConfigError(f"optim.{key}: must be > 0 or null, got {value}")
        if not 0 <= self.optim.warmup_ratio < 1:
            raise ConfigError(f"optim.warmup_ratio: must lie in [0, 1), got {self.optim.warmup_ratio}")
        if len(self.optim.betas) != 2 or not all(0 <= b < 1 for b in self.optim.betas):
            raise ConfigError(f"optim.betas: must be two numbers in [0, 1), got {self.optim.betas}")
        if self.visualize_every and not self.visualize_vae:
            raise ConfigError("visualize_vae: visualize_every needs the VAE folder the cache was built with")
        bad = [t for t in self.data.tasks if t not in TASKS]
        if bad or not self.data.tasks:
            raise ConfigError(f"data.tasks: {bad or 'empty'} not among {list(TASKS)}")
        bad = {t: n for t, n in self.data.task_repeat.items() if t not in TASKS or n < 1}
        if bad:
            raise ConfigError(f"data.task_repeat: {bad} (tasks among {list(TASKS)}, each at least 1)")
        if not 0 <= self.data.labelled_fraction <= 1:
            raise ConfigError(f"data.labelled_fraction: must lie in [0, 1], got {self.data.labelled_fraction}")
        if self.data.unlabelled_as_vision_only and VISION_ONLY not in self.data.tasks:
            raise ConfigError(f"data.unlabelled_as_vision_only: needs {VISION_ONLY!r} in data.tasks")
        self._validate_parts()
        self._validate_warmup()
        return self

    def _validate_warmup(self) -> None:
        warmup = self.model.language_warmup
        if warmup is None:
            return
        if self.model.init:
            raise ConfigError("model.language_warmup: warms up a fresh language model; model.init brings a trained "
                              "one (drop one of the two)")
        if warmup.steps < 1 or warmup.batch < 1 or not warmup.lr > 0:
            raise ConfigError(f"model.language_warmup: steps and batch must be >= 1 and lr > 0, got steps "
                              f"{warmup.steps}, batch {warmup.batch}, lr {warmup.lr}")

    def _validate_parts(self) -> None:
        parts, lora = self.model.train_parts, self.model.lora
        bad = [p for p in parts if p not in TRAIN_PARTS]
        if bad or not parts:
            raise ConfigError(f"model.train_parts: {bad or 'empty'} not among {list(TRAIN_PARTS)}")
        if lora is None:
            return
        if "llm" not in parts:
            raise ConfigError("model.lora: LoRA trains the LLM, but model.train_parts leaves out llm")
        if self.zero_stage != 2:
            raise ConfigError("model.lora: needs zero_stage 2 (the merged export needs the whole base weights)")
        if lora.r < 1 or not lora.alpha > 0 or not 0 <= lora.dropout < 1:
            raise ConfigError(f"model.lora: r must be >= 1, alpha > 0 and dropout in [0, 1), got r {lora.r}, "
                              f"alpha {lora.alpha}, dropout {lora.dropout}")
        wrong = [t for t in lora.targets if t not in QWEN2_PROJECTIONS]
        if wrong or not lora.targets:
            raise ConfigError(f"model.lora.targets: {wrong or 'empty'} not among {list(QWEN2_PROJECTIONS)}")
        if lora.export == "adapter" and not self.model.init:
            raise ConfigError("model.lora.export: an adapter alone needs model.init (the base it applies to); "
                              "a fresh run exports merged or both")


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides, type-checked and validated."""
    return load_config(TrainConfig, path, list(overrides)).validate()
