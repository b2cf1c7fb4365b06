"""End-to-end forward of the tiny Ross3D model: shapes, finite losses, gradients, lockstep, generation, grounding."""

from __future__ import annotations

import pytest
import torch

from ross3d.errors import InputError
from ross3d.model.config import preset
from ross3d.model.ross3d import Ross3D
from ross3d.model.synthetic import random_batch


@pytest.fixture(scope="module")
def config():
    return preset("tiny", ground_token_id=300, coord_token_id=301)


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return Ross3D(config)


def test_shapes_through_forward(model, config):
    batch = random_batch(config, 2)
    view_mask = torch.zeros(2, config.n_frames, dtype=torch.bool)
    inputs, patch, hidden = model.encode(batch, view_mask)
    length = batch["input_ids"].shape[1] - 1 + config.n_frames * 14 * 15
    assert inputs.embeds.shape == (2, length, config.hidden_size)
    assert hidden.shape == (2, length, config.hidden_size)
    assert patch.shape == (2, config.n_frames, 729, config.hidden_size)
    assert inputs.labels[0, 3:3 + config.visual_len].eq(-100).all()
    assert inputs.attention_mask[1].sum() == length - 1  # sample 1 has one padding token, still at the end
    frames = model.frame_states(hidden, inputs.visual_start)
    assert frames.shape == (2, config.n_frames, 196, config.hidden_size)
    cond = model.conditions(frames, view_mask)
    assert cond["view"].shape == (2, config.n_frames, 196, config.denoiser_dim)
    torch.testing.assert_close(cond["view"][:, 0], cond["view"][:, 5])  # "pooled": one condition for every view
    assert cond["bev"].shape == (2, 729, config.denoiser_dim)


@pytest.mark.parametrize("view_condition", ["pooled", "pooled+own"])
def test_losses_finite_and_gradients_reach_exactly_trainable(config, view_condition):
    torch.manual_seed(1)
    model = Ross3D(config.replace(view_condition=view_condition)).train()
    for p in model.denoiser.parameters():  # leave adaLN-zero so every gradient is nonzero
        p.data.add_(torch.randn_like(p) * 0.02)
    frozen = model.llm.model.layers[0].mlp.down_proj.weight
    frozen.requires_grad_(False)
    batch = random_batch(config, 2, grounding=[False, True])
    out = model(batch, global_step=0, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss"}
    for key, value in out.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    assert out["vm_loss"] > 0 and out["ground_loss"] > 0 and out["lm_loss"] > 0 and out["bev_loss"] > 0
    torch.testing.assert_close(out["loss"], out["lm_loss"] + out["vm_loss"] + out["bev_loss"] + out["ground_loss"])
    out["loss"].backward()
    assert frozen.grad is None
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []


def test_every_call_runs_denoiser_and_ground_heads(model, config):
    """ZeRO-3 lockstep: with nothing masked and no grounding sample, both heads still get (zero) gradients."""
    model.zero_grad()
    model.train()
    out = model(random_batch(config, 1), global_step=1)
    assert out["vm_loss"] == 0 and out["ground_loss"] == 0
    out["loss"].backward()
    assert model.ground_head.zero_target.grad is not None
    assert model.denoiser.z_embedder_view.cls_token.grad is not None
    model.zero_grad()


def test_grounding_only_batch_has_no_lm_vm_bev(model, config):
    model.train()
    out = model(random_batch(config, 2, grounding=[True, True]), global_step=0)
    assert out["lm_loss"] == 0 and out["vm_loss"] == 0 and out["bev_loss"] == 0
    torch.testing.assert_close(out["loss"], out["ground_loss"])


def test_ground_scores_match_training_loss(model, config):
    model.eval()
    batch = random_batch(config, 1, grounding=[True], n_objects=4)
    scores = model.ground_scores(batch)[0]
    assert scores.shape == (5,)
    expected = torch.logsumexp(scores / 0.07, 0) - scores[0] / 0.07
    out = model(batch, global_step=0)
    torch.testing.assert_close(out["ground_loss"], expected, rtol=1e-4, atol=1e-4)


def test_packed_sample_grounds_each_query_against_its_own_targets(model, config):
    """A packed sample (two `<ground>` turns): the loss is the mean of each query's InfoNCE against its own row of
    object_positive. Each query's scores come from `ground_scores` on the prefix that ends at that query (causal
    attention: the same hidden state), the InfoNCE from its hand formula."""
    model.eval()
    batch = random_batch(config, 1, grounding=[True], n_objects=4)
    first = 12
    batch["input_ids"][0, first] = config.ground_token_id
    positive = torch.zeros(1, 2, 4, dtype=torch.bool)
    positive[0, 0, 1] = True  # the first query's target: object 1
    positive[0, 1, 2] = positive[0, 1, 3] = True  # the second's: objects 2 and 3
    batch["object_positive"] = positive
    prefix = dict(batch, input_ids=batch["input_ids"][:, :first + 1], labels=batch["labels"][:, :first + 1],
                  attention_mask=batch["attention_mask"][:, :first + 1])
    s0, s1 = model.ground_scores(prefix)[0] / 0.07, model.ground_scores(batch)[0] / 0.07
    nce0 = torch.logsumexp(s0, 0) - s0[1]  # scores[k]: object k; scores[4]: the zero target
    nce1 = torch.logsumexp(s1, 0) - torch.logsumexp(s1[[2, 3]], 0)
    out = model(batch, global_step=0)
    torch.testing.assert_close(out["ground_loss"], (nce0 + nce1) / 2, rtol=1e-4, atol=1e-4)
    batch["object_positive"] = positive[:, :1]  # two queries, targets for one: a clear error
    with pytest.raises(InputError, match="2 <ground> queries but targets for 1"):
        model(batch, global_step=0)


def test_generate_matches_manual_greedy_loop(model, config):
    model.eval()
    batch = random_batch(config, 2, text_len=12)
    got = model.generate(batch, max_new_tokens=4, eos_token_id=[])
    for b in range(2):
        keep = batch["attention_mask"][b].bool()
        single = {k: v[b:b + 1] for k, v in batch.items()}
        single["input_ids"] = single["input_ids"][:, keep]
        single["attention_mask"] = single["attention_mask"][:, keep]
        inputs, _, _ = model.encode(single, torch.zeros(1, config.n_frames, dtype=torch.bool))
        embeds, tokens = inputs.embeds, []
        for _ in range(4):
            logits = model.llm(inputs_embeds=embeds).logits[0, -1]
            tokens.append(int(logits.argmax()))
            embeds = torch.cat([embeds, model.llm.get_input_embeddings()(torch.tensor([[tokens[-1]]]))], dim=1)
        assert got[b] == tokens


def test_missing_placeholder_is_a_clear_error(model, config):
    batch = random_batch(config, 1)
    batch["input_ids"][0, 3] = 20
    with pytest.raises(InputError, match="image placeholders"):
        model(batch)


def test_bf16_model_trains(config):
    torch.manual_seed(2)
    model = Ross3D(config).to(torch.bfloat16).train()
    out = model(random_batch(config, 2, grounding=[False, True]), global_step=0)
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert model.mask_token.grad is not None and model.denoiser.z_embedder_bev.cls_token.grad is not None


def test_reconstruction_conditions_sampling_and_decoding(model, config):
    from diffusers import AutoencoderKL

    from ross3d.model.reconstruction import decode_latents

    model.eval()
    batch = random_batch(config, 1)
    mask = torch.zeros(1, config.n_frames, dtype=torch.bool)
    mask[0, :2] = True
    cond = model.reconstruction_conditions(batch, mask)
    plain = model.reconstruction_conditions(batch, torch.zeros_like(mask))
    assert not torch.allclose(cond["view"], plain["view"])  # masked frames neither condition nor look the same
    gen = torch.Generator().manual_seed(0)
    latents = model.sample(cond["view"][0, :2], "view", steps=3, sampler="ddpm", generator=gen)
    assert latents.shape == (2, 64, 14, 14) and torch.isfinite(latents).all()
    bev = model.sample(cond["bev"], "bev", steps=2, sampler="ddim")
    assert bev.shape == (1, 64, 27, 27)
    vae = AutoencoderKL(block_out_channels=[8, 16, 16, 16], layers_per_block=1, latent_channels=16, norm_num_groups=4,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        use_quant_conv=False, use_post_quant_conv=False)
    images = decode_latents(config, latents, vae)
    assert images.shape == (2, 3, 224, 224) and images.min() >= 0 and images.max() <= 1


def test_coord_tokens_get_box_centre_pe_and_visual_tokens_their_voxel_pe(model, config):
    from ross3d.model.position import discretize, sincos_3d

    batch = random_batch(config, 2)
    batch["has_box"] = torch.tensor([[True], [False]])
    view_mask = torch.zeros(2, config.n_frames, dtype=torch.bool)
    view_mask[0, 1] = True
    inputs, patch, _ = model.encode(batch, view_mask)
    shift = config.visual_len - 1
    table = model.llm.get_input_embeddings().weight
    coord_pos = 5 + shift  # random_batch puts <coord> at 5, after the placeholder at 3
    pe = sincos_3d(discretize(batch["box_center"][0, 0], 0.1, (-15, -15, -5), (15, 15, 5)), config.hidden_size)
    torch.testing.assert_close(inputs.embeds[0, coord_pos], table[301] + pe)
    torch.testing.assert_close(inputs.embeds[1, coord_pos], table[301])
    # masked frame 1 of sample 0: its first token is mask_token + PE of its own voxel
    first = 3 + 1 * 14 * 15
    want = model.mask_token + sincos_3d(batch["voxels"][0, 1, 0, 0], config.hidden_size)
    torch.testing.assert_close(inputs.embeds[0, first], want)


def test_each_coord_token_of_a_packed_sample_gets_its_own_box_centre(model, config):
    """A packed Scan2Cap sample: its first `<coord>` (position 5) gets the PE of centre 0, its second (position 15)
    that of centre 1; a sample with more `<coord>` tokens than centres is a clear error."""
    from ross3d.model.position import discretize, sincos_3d

    batch = random_batch(config, 1)
    batch["input_ids"][0, 15] = config.coord_token_id
    batch["box_center"] = torch.tensor([[[1.0, -2.0, 0.5], [-3.0, 2.5, 1.0]]])
    batch["has_box"] = torch.ones(1, 2, dtype=torch.bool)
    inputs, _, _ = model.encode(batch, torch.zeros(1, config.n_frames, dtype=torch.bool))
    table, shift = model.llm.get_input_embeddings().weight, config.visual_len - 1
    for k, pos in enumerate((5, 15)):
        pe = sincos_3d(discretize(batch["box_center"][0, k], 0.1, (-15, -15, -5), (15, 15, 5)), config.hidden_size)
        torch.testing.assert_close(inputs.embeds[0, pos + shift], table[config.coord_token_id] + pe)
    batch["box_center"], batch["has_box"] = batch["box_center"][:, :1], batch["has_box"][:, :1]
    with pytest.raises(InputError, match="2 <coord> tokens but 1 box centres"):
        model.encode(batch, torch.zeros(1, config.n_frames, dtype=torch.bool))


def test_conditions_ignore_masked_frames_states(model, config):
    frames = torch.randn(1, config.n_frames, 196, config.hidden_size)
    mask = torch.zeros(1, config.n_frames, dtype=torch.bool)
    mask[0, 2] = True
    a = model.conditions(frames, mask)
    frames[0, 2] += 5.0
    b = model.conditions(frames, mask)
    torch.testing.assert_close(a["view"], b["view"])
    c = model.conditions(frames, torch.zeros_like(mask))
    assert not torch.allclose(a["bev"], c["bev"])


def test_own_view_condition_adds_each_views_own_states(config):
    """`pooled+own`: view k's condition = the pooled condition + Linear(LayerNorm(frame k's states)), token by token;
    the projection starts at zero, so a fresh model conditions as the original."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = Ross3D(config.replace(view_condition="pooled+own"))
    frames = torch.randn(1, config.n_frames, 196, config.hidden_size)
    mask = torch.zeros(1, config.n_frames, dtype=torch.bool)
    mask[0, 2] = True
    fresh = model.conditions(frames, mask)["view"]
    torch.testing.assert_close(fresh[0, 2], fresh[0, 0])
    own = model.denoiser.z_own_view
    torch.nn.init.normal_(own.weight)
    torch.nn.init.normal_(own.bias)
    view = model.conditions(frames, mask)["view"]
    for k in (0, 2):
        expected = fresh[0, k] + F.layer_norm(frames[0, k], (config.hidden_size,), eps=1e-5) @ own.weight.T + own.bias
        torch.testing.assert_close(view[0, k], expected, rtol=1e-4, atol=1e-4)
    frames[0, 2] += torch.randn(196, config.hidden_size)  # the masked frame: only its own condition changes
    moved = model.conditions(frames, mask)["view"]
    torch.testing.assert_close(moved[0, 0], view[0, 0])
    assert (moved[0, 2] - view[0, 2]).abs().mean() > 0.1


def test_own_condition_lays_masked_frames_last(config):
    """`pooled+own` lays the visible frames first, then the masked ones (the LLM is causal); `frame_states` returns
    the states in frame order again. The expected slots are listed by hand."""
    from ross3d.model.inputs import visual_tokens

    torch.manual_seed(0)
    model = Ross3D(config.replace(view_condition="pooled+own"))
    batch = random_batch(config, 1)
    mask = torch.zeros(1, config.n_frames, dtype=torch.bool)
    mask[0, [1, 4]] = True
    inputs, patch = model.llm_inputs(batch, mask)
    in_frame_order = visual_tokens(config, patch, batch["voxels"], mask, model.mask_token, model.image_newline)
    start, per_frame = int(inputs.visual_start[0]), 14 * 15
    block = inputs.embeds[0, start:start + config.visual_len].reshape(config.n_frames, per_frame, -1)
    frames = in_frame_order[0].reshape(config.n_frames, per_frame, -1)
    torch.testing.assert_close(block, frames[[0, 2, 3, 5, 6, 7, 1, 4]])
    states = model.frame_states(inputs.embeds, inputs.visual_start, mask)
    plain = model.frame_states(torch.cat([inputs.embeds[:, :start], in_frame_order], 1), inputs.visual_start)
    torch.testing.assert_close(states, plain)
    unmasked, _ = model.llm_inputs(batch, torch.zeros_like(mask))  # nothing masked: frame order
    torch.testing.assert_close(unmasked.embeds[0, start:start + config.visual_len],
                               visual_tokens(config, patch, batch["voxels"], torch.zeros_like(mask),
                                             model.mask_token, model.image_newline)[0])


def test_view_condition_is_checked(config):
    from ross3d.errors import ConfigError

    with pytest.raises(ConfigError, match="view_condition: 'own' is not one of"):
        config.replace(view_condition="own")


def test_denoiser_starts_from_dit_initialisation(model, config):
    from ross3d.model.denoiser import sincos_2d

    den = model.denoiser
    assert den.final_layer.linear.weight.abs().sum() == 0
    assert all(b.adaLN_modulation[-1].weight.abs().sum() == 0 for b in den.blocks)
    torch.testing.assert_close(den.pos_embed_bev.data[0], sincos_2d(config.denoiser_dim, 27))
    assert not den.ln_pre.elementwise_affine and den.ln_pre.eps == 1e-5
    std = model.mask_token.std().item()
    assert 0.5 / config.hidden_size ** 0.5 < std < 2 / config.hidden_size ** 0.5


def test_losses_decrease_when_fitting_one_batch(config):
    config = config.replace(n_frames=4)
    torch.manual_seed(4)
    model = Ross3D(config).train()
    batch = random_batch(config, 2, grounding=[False, True])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for step in range(4):
        out = model(batch, global_step=1, generator=torch.Generator().manual_seed(step % 2))  # never masking
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        history.append({k: v.item() for k, v in out.items()})
    assert history[-1]["lm_loss"] < history[0]["lm_loss"] and history[-1]["ground_loss"] < history[0]["ground_loss"]
