"""The Ross3D model: Qwen2 (transformers) over cached SigLIP features with 3D position encoding, view masking,
the DiT reconstruction heads and the InfoNCE grounding head.

Batch dict (B samples, right-padded text; V = config.n_frames, P = patch_grid^2, g = pool_grid):
- `input_ids` (B, L) long with exactly one `config.image_token_id` per sample; `attention_mask` (B, L);
  `labels` (B, L) long, -100 = unsupervised (needed by `forward`).
- `vision` (B, V, P, C_v) cached SigLIP layer-26 features; `voxels` (B, V, g, g, 3) int16 voxel indices.
- `view_mean`, `view_logvar` (B, V, C, patch_grid, patch_grid); `bev_mean`, `bev_logvar` (B, C, 2*bev_grid,
  2*bev_grid); `bev_valid` (B, bev_grid, bev_grid) bool.
- optional `grounding` (B,) bool (default all False); for grounding samples `object_boxes` (B, N, 6) metres,
  `object_membership` (B, N, V, patch_grid, patch_grid) bool, `object_valid` (B, N) bool, `object_positive`
  (B, T, N) bool: row t holds the positives of the sample's t-th `<ground>` query (none positive -> the zero
  target); a packed sample (several turns) has several queries, and its grounding loss is their mean.
- optional Scan2Cap `box_center` (B, T, 3) metres and `has_box` (B, T) bool: the k-th `<coord>` token of a sample
  gets the PE of its k-th centre (T = 1 unless packed).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from ross3d.errors import InputError
from ross3d.model.config import Ross3DConfig
from ross3d.model.denoiser import AttentionPooler, Denoiser
from ross3d.model.diffusion import GaussianDiffusion
from ross3d.model.grounding import GroundingHead, object_features
from ross3d.model.inputs import LLMInputs, frame_order, splice, visual_tokens
from ross3d.model.lm_loss import lm_losses
from ross3d.model.masking import draw_view_mask, masking_samples
from ross3d.model.position import discretize
from ross3d.model.projector import Projector, strip_row_newlines
from ross3d.model.reconstruction import bev_loss, sample_latents, view_loss


def qwen2_config(config: Ross3DConfig):
    """The transformers Qwen2Config of the language model."""
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                       intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
                       num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
                       rope_theta=config.rope_theta, rms_norm_eps=config.rms_norm_eps,
                       max_position_embeddings=config.max_position_embeddings,
                       tie_word_embeddings=config.tie_word_embeddings,
                       initializer_range=config.initializer_range)


class Ross3D(PreTrainedModel):
    """LLM + projector + learned `image_newline`/`mask_token` + denoiser + grounding head, a transformers
    `PreTrainedModel` (`save_pretrained`, `from_pretrained`, `AutoModel` once `ross3d` is imported).

    Each part initialises itself when built (the Qwen2 LM by transformers, the denoiser as DiT, ...); `post_init`
    leaves those values alone. `from_pretrained` builds the model without values (meta device) and fills it from the
    checkpoint; `_init_weights` then initialises what the checkpoint lacks (docs/model.md, "Loading with
    transformers")."""

    config_class = Ross3DConfig
    _no_split_modules = ["Qwen2DecoderLayer", "Denoiser"]

    def __init__(self, config: Ross3DConfig, llm: nn.Module | None = None):
        super().__init__(config.validate())
        from transformers import Qwen2ForCausalLM

        self.llm = llm if llm is not None else Qwen2ForCausalLM(qwen2_config(config))
        d = config.hidden_size
        self.projector = Projector(config.vision_dim, d)
        self.image_newline = nn.Parameter(torch.randn(d) / math.sqrt(d))
        self.mask_token = nn.Parameter(torch.randn(d) / math.sqrt(d))  # explicit init (docs/original-model.md 11, item 1)
        self.denoiser = Denoiser(config.denoiser_channels, d, config.denoiser_dim, config.denoiser_depth,
                                 config.denoiser_heads, config.denoiser_mlp_ratio, config.pool_grid, config.bev_grid,
                                 own_view=config.own_view_condition)
        self.ground_head = GroundingHead(d, config.ground_temperature)
        self.diffusion = GaussianDiffusion(config.diffusion_steps, config.prediction_type)
        for param in self._own_parameters():  # built with their initial values above: post_init keeps them
            if not param.is_meta:  # from_pretrained builds on the meta device: what it does not load, it initialises
                param._is_hf_initialized = True
        self.post_init()

    def _own_parameters(self) -> list[nn.Parameter]:
        """The parameters outside the language model (which transformers initialises itself)."""
        return [p for name, p in self.named_parameters() if not name.startswith("llm.")]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise a module's tensors that `from_pretrained` found no value for (transformers skips tensors it
        loaded): the module's construction-time initialisation, run again."""
        d = self.config.hidden_size
        if module is self:
            for param in (self.image_newline, self.mask_token):
                init.copy_(param, torch.randn(d) / math.sqrt(d))
        elif isinstance(module, Denoiser):
            module.initialize_weights()
        elif module is self.denoiser.z_own_view:  # zero, as the denoiser builds it (a checkpoint without it)
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, GroundingHead):
            init.normal_(module.zero_target)
        elif isinstance(module, AttentionPooler):
            init.normal_(module.cls_token, std=0.02)
        elif hasattr(module, "reset_parameters") and not any(True for _ in module.children()):
            module.reset_parameters()  # Linear, Conv2d, LayerNorm: torch's initialisation

    # ---------------------------------------------------------------- LMM
    def llm_inputs(self, batch: dict, view_mask: torch.Tensor) -> tuple[LLMInputs, torch.Tensor]:
        """Projector and visual layout spliced into the text: -> (inputs, patch features (B, V, P, D))."""
        patch = self.projector(batch["vision"].to(self.projector.linear_1.weight.dtype))
        visual = visual_tokens(self.config, patch, batch["voxels"], view_mask, self.mask_token, self.image_newline)
        return splice(self.config, self.llm.get_input_embeddings(), batch, visual), patch

    def encode(self, batch: dict, view_mask: torch.Tensor) -> tuple[LLMInputs, torch.Tensor, torch.Tensor]:
        """Run projector, visual layout and the LLM: -> (inputs, patch features (B,V,P,D), hidden (B,L',D))."""
        inputs, patch = self.llm_inputs(batch, view_mask)
        out = self.llm.model(inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask, use_cache=False)
        return inputs, patch, out.last_hidden_state

    def frame_states(self, hidden: torch.Tensor, visual_start: torch.Tensor,
                     view_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of the visual tokens without newlines, in frame order: (B, V, g*g, D). `view_mask` (B, V)
        is the mask the input was built with (its `frame_order`); None: nothing masked."""
        n, cfg = self.config.visual_len, self.config
        slots = torch.stack([strip_row_newlines(hidden[b, int(s):int(s) + n], cfg.n_frames, cfg.pool_grid)
                             for b, s in enumerate(visual_start)])
        if view_mask is None:
            return slots
        slot_of_frame = frame_order(cfg, view_mask).argsort(1)
        return slots.gather(1, slot_of_frame[:, :, None, None].expand_as(slots))

    def conditions(self, frames: torch.Tensor, view_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Denoiser conditions: {"view": (B, V, Q_v, d), one per frame were it masked, "bev": (B, Q_b, d)}. Both
        pool the unmasked frames; with `view_condition: pooled+own` a view's condition also adds its own hidden
        states (the mask token plus its 3D position encoding at the input), token by token."""
        b, v, t, d = frames.shape
        keys = (~view_mask)[:, :, None].expand(b, v, t).reshape(b, v * t)
        states = frames.reshape(b, v * t, d)
        pooled = {kind: self.denoiser.condition(states, keys, kind) for kind in ("view", "bev")}
        view = pooled["view"][:, None].expand(b, v, -1, -1)
        if self.config.own_view_condition:
            view = view + self.denoiser.own_condition(frames)
        return {"view": view, "bev": pooled["bev"]}

    # ---------------------------------------------------------------- training
    def forward(self, batch: dict, global_step: int = 0, generator: torch.Generator | None = None) -> dict:
        """Training losses: {loss, lm_loss, vm_loss, bev_loss, ground_loss} (0-dim tensors).

        Each sample contributes lm + vm + bev (text samples) or InfoNCE (grounding samples); every component is
        summed over samples and divided by B, so loss = lm_loss + vm_loss + bev_loss + ground_loss.
        """
        ids = batch["input_ids"]
        bsz = ids.shape[0]
        ground = batch.get("grounding", torch.zeros(bsz, dtype=torch.bool, device=ids.device)).bool()
        masking = masking_samples(self.config, ~ground, global_step, generator) if self.training \
            else torch.zeros_like(ground)
        view_mask = draw_view_mask(self.config, masking, generator)
        inputs, patch, hidden = self.encode(batch, view_mask)
        text = (~ground).float()
        lm = lm_losses(hidden, inputs.labels, self.llm.get_output_embeddings(), self.config.lm_labelled_only) * text
        cond = self.conditions(self.frame_states(hidden, inputs.visual_start, view_mask), view_mask)
        vm = view_loss(self.config, self.denoiser, self.diffusion, cond["view"], view_mask,
                       batch["view_mean"], batch["view_logvar"], generator)
        bev = bev_loss(self.config, self.denoiser, self.diffusion, cond["bev"], batch["bev_mean"],
                       batch["bev_logvar"], batch["bev_valid"], generator) * text
        gl = self._ground_losses(batch, inputs, patch, hidden, ground)
        parts = {"lm_loss": lm.sum() / bsz, "vm_loss": vm.sum() / bsz, "bev_loss": bev.sum() / bsz,
                 "ground_loss": gl.sum() / bsz}
        return {"loss": sum(parts.values()), **parts}

    # ---------------------------------------------------------------- grounding
    def _query_states(self, inputs: LLMInputs, hidden: torch.Tensor, rows: list[int]) -> list[torch.Tensor]:
        """Hidden states at the `<ground>` tokens of each listed sample, in text order: (queries, D) per row."""
        out = []
        for b in rows:
            hits = (inputs.input_ids[b] == self.config.ground_token_id).nonzero().flatten()
            if not len(hits):
                raise InputError("batch['input_ids']", f"grounding sample {b} has no <ground> token "
                                 f"(id {self.config.ground_token_id})")
            out.append(hidden[b, hits])
        return out

    def _object_scores(self, batch: dict, patch: torch.Tensor, query: torch.Tensor, b: int) -> torch.Tensor:
        """Scores (N_b + 1,) of sample b's valid objects plus the zero target for a query (D,); (Q, N_b + 1) for
        queries (Q, D), the object features computed once."""
        valid = batch["object_valid"][b].bool()
        centres = discretize(batch["object_boxes"][b][valid, :3], self.config.voxel_size, self.config.xyz_min,
                             self.config.xyz_max)
        member = batch["object_membership"][b][valid].flatten(2)  # (N, V, P)
        feats = object_features(patch[b], member, centres)
        return self.ground_head.scores(query, feats)

    def _ground_losses(self, batch: dict, inputs: LLMInputs, patch: torch.Tensor, hidden: torch.Tensor,
                       ground: torch.Tensor) -> torch.Tensor:
        """Per-sample InfoNCE (B,); the heads run on a zero-weighted dummy when no sample grounds (lockstep)."""
        rows = ground.nonzero().flatten().tolist()
        losses = torch.zeros(ground.shape[0], device=hidden.device)
        if not rows:
            d = hidden.shape[-1]
            dummy = self.ground_head.scores(hidden[0, 0], patch.new_zeros(1, d))
            return losses + 0.0 * dummy.sum()
        per_sample = []
        for queries, b in zip(self._query_states(inputs, hidden, rows), rows):
            positive = batch["object_positive"][b]
            if len(queries) > positive.shape[0]:
                raise InputError("batch['object_positive']", f"grounding sample {b} has {len(queries)} <ground> "
                                 f"queries but targets for {positive.shape[0]}")
            positive = positive[:len(queries), batch["object_valid"][b].bool()].bool()
            per_sample.append(self.ground_head.loss(self._object_scores(batch, patch, queries, b), positive).mean())
        return losses.index_add(0, torch.tensor(rows, device=losses.device), torch.stack(per_sample))

    @torch.no_grad()
    def ground_scores(self, batch: dict) -> list[torch.Tensor]:
        """Teacher-forced grounding: per sample, fp32 scores (N_b + 1,) over its valid proposals + zero target, for
        its last `<ground>` query."""
        bsz = batch["input_ids"].shape[0]
        view_mask = torch.zeros(bsz, self.config.n_frames, dtype=torch.bool, device=batch["input_ids"].device)
        inputs, patch, hidden = self.encode(batch, view_mask)
        queries = self._query_states(inputs, hidden, list(range(bsz)))
        return [self._object_scores(batch, patch, queries[b][-1], b) for b in range(bsz)]

    # ---------------------------------------------------------------- generation and visualisation
    @torch.no_grad()
    def generate(self, batch: dict, max_new_tokens: int = 32, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int = 0) -> list[list[int]]:
        """Greedy decoding with a KV cache; returns the new token ids of each sample (up to and without eos)."""
        bsz = batch["input_ids"].shape[0]
        view_mask = torch.zeros(bsz, self.config.n_frames, dtype=torch.bool, device=batch["input_ids"].device)
        inputs, _ = self.llm_inputs(batch, view_mask)
        embeds, mask = _left_pad(inputs.embeds, inputs.attention_mask)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
        stops = set([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or [])
        result = []
        for row in out.tolist():
            cut = next((i for i, tok in enumerate(row) if tok in stops), len(row))
            result.append(row[:cut])
        return result

    @torch.no_grad()
    def reconstruction_conditions(self, batch: dict, view_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the LMM with the given (B, V) bool view mask; return the pooled denoiser conditions."""
        inputs, _, hidden = self.encode(batch, view_mask.bool())
        return self.conditions(self.frame_states(hidden, inputs.visual_start, view_mask.bool()), view_mask.bool())

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, kind: str = "view", steps: int = 50, sampler: str = "ddim",
               generator: torch.Generator | None = None, clip: bool = True) -> torch.Tensor:
        """Denoiser sampling: cond (N, Q, d) -> scaled latents (N, 4C, g, g) (see reconstruction.decode_latents);
        `clip=False` skips the original's x0 clamping."""
        return sample_latents(self.config, self.denoiser, self.diffusion, cond, kind, steps, sampler, generator,
                              clip)


def _left_pad(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move right padding to the left (generation appends at the end of every row)."""
    shifts = (mask == 0).sum(1)
    idx = (torch.arange(mask.shape[1], device=mask.device)[None] - shifts[:, None]) % mask.shape[1]
    return embeds.gather(1, idx[..., None].expand_as(embeds)), mask.gather(1, idx)
