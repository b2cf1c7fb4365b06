"""Model components against independent closed forms: 3D PE, pooling, newline layout, 2x2 grouping, cosine
schedule, q_sample, the v target, sampling, the masked BEV loss, masking schedules, labelled-only LM loss, InfoNCE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ross3d.errors import ConfigError
from ross3d.model.config import PRESETS, preset
from ross3d.model.diffusion import GaussianDiffusion, cosine_betas
from ross3d.model.grounding import GroundingHead, object_features
from ross3d.model.latents import channel_to_space, latent_targets, space_to_channel
from ross3d.model.lm_loss import lm_losses
from ross3d.model.masking import draw_view_mask, masking_samples
from ross3d.model.position import discretize, sincos_3d
from ross3d.model.projector import add_row_newlines, pool_tokens, strip_row_newlines
from ross3d.model.reconstruction import bev_loss
from ross3d.model.ross3d import Ross3D


def test_sincos_3d_matches_numpy_formula():
    dim = 3584
    vox = np.array([[0, 0, 0], [300, 17, 100], [151, 299, 3]])
    got = sincos_3d(torch.from_numpy(vox), dim).numpy()
    feats = dim // 3
    want = np.zeros((3, dim))
    for n, p in enumerate(vox):
        for axis in range(3):
            for i in range(feats):
                freq = 10000.0 ** (2 * (i // 2) / feats)
                val = p[axis] / freq
                want[n, axis * feats + i] = math.sin(val) if i % 2 == 0 else math.cos(val)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert (got[:, 3582:] == 0).all()
    assert sincos_3d(torch.from_numpy(vox), 96, torch.bfloat16).dtype == torch.bfloat16


def test_discretize_clamps_and_rounds():
    xyz = torch.tensor([[-20.0, 0.04, 5.5], [14.96, -14.94, -4.96]])
    got = discretize(xyz, 0.1, (-15, -15, -5), (15, 15, 5))
    assert got.tolist() == [[0, 150, 100], [300, 1, 0]]


def test_bilinear_pooling_samples_half_pixel_centres():
    grid = torch.arange(27 * 27, dtype=torch.float64).reshape(1, 27 * 27, 1)  # value = 27*y + x
    out = pool_tokens(grid, 27, 14).reshape(14, 14)
    src = [min(max((i + 0.5) * 27 / 14 - 0.5, 0), 26) for i in range(14)]
    want = torch.tensor([[27 * y + x for x in src] for y in src], dtype=torch.float64)
    torch.testing.assert_close(out, want)


def test_row_newlines_layout_and_inverse():
    g, v, d = 3, 2, 4
    tokens = torch.randn(v, g * g, d)
    nl = torch.full((d,), 7.0)
    seq = add_row_newlines(tokens, nl, g)
    assert seq.shape == (v * g * (g + 1), d)
    newline_ids = [g + (g + 1) * i for i in range(v * g)]
    assert (seq[newline_ids] == 7).all()
    torch.testing.assert_close(seq[g + 1], tokens[0, g])  # frame 0 row 1 starts after row 0 and its newline
    torch.testing.assert_close(strip_row_newlines(seq, v, g), tokens)


def test_space_to_channel_order_is_c_p1_p2():
    z = torch.randn(2, 3, 6, 8)
    x = space_to_channel(z)
    assert x.shape == (2, 12, 3, 4)
    for c in range(3):
        for p1 in range(2):
            for p2 in range(2):
                torch.testing.assert_close(x[:, c * 4 + p1 * 2 + p2], z[:, c, p1::2, p2::2])
    torch.testing.assert_close(channel_to_space(x), z)


def test_view_targets_resize_27_to_28_after_sampling():
    mean, logvar = torch.randn(2, 16, 27, 27), torch.full((2, 16, 27, 27), -60.0)  # clamped to -30: ~deterministic
    x = latent_targets(mean, logvar, 14, 0.1159, 0.3611)
    assert x.shape == (2, 64, 14, 14)
    want = space_to_channel(F.interpolate((mean - 0.1159) * 0.3611, size=(28, 28), mode="bilinear"))
    torch.testing.assert_close(x, want, atol=1e-5, rtol=0)


def test_cosine_schedule_closed_form_and_diffusers_match():
    from diffusers import DDPMScheduler

    betas = cosine_betas(1000)
    abar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert betas[0].item() == pytest.approx(1 - abar(0.001) / abar(0.0), rel=1e-12)
    assert betas[500].item() == pytest.approx(1 - abar(0.501) / abar(0.5), rel=1e-12)
    assert betas[-1].item() == 0.999  # the clip
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").betas
    torch.testing.assert_close(ref.double(), betas, atol=1e-6, rtol=1e-5)
    diff = GaussianDiffusion(1000)
    x0, noise, t = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 499, 999])
    ab = torch.cumprod(1 - betas, 0)[t].float()[:, None]
    torch.testing.assert_close(diff.q_sample(x0, t, noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


def test_v_target_is_sqrt_abar_eps_minus_sqrt_one_minus_abar_x0():
    x0, noise = torch.tensor([[1.5, -2.0]] * 3), torch.tensor([[0.3, 0.7]] * 3)
    t = torch.tensor([0, 500, 999])
    got = GaussianDiffusion(1000, "v_prediction").target(x0, t, noise)
    for row, step in enumerate((0, 500, 999)):
        a = _abar(step)  # closed form below, not the class's table
        want = [math.sqrt(a) * n - math.sqrt(1 - a) * x for n, x in ((0.3, 1.5), (0.7, -2.0))]
        torch.testing.assert_close(got[row], torch.tensor(want), atol=1e-6, rtol=1e-5)
    assert torch.equal(GaussianDiffusion(1000).target(x0, t, noise), noise)  # epsilon: the noise itself
    with pytest.raises(ConfigError, match="prediction_type"):
        GaussianDiffusion(1000, "x0")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("clip", [True, False])
def test_sampling_with_an_exact_model_returns_the_data_point(sampler, clip, prediction):
    diff = GaussianDiffusion(1000, prediction)
    target = torch.tensor([[2.5, -0.4, 0.7, -1.8], [0.1, -3.0, 0.9, 1.2]])
    abar = diff.alphas_cumprod.float()

    def oracle(x, t):  # the true eps (or v = sqrt(a) eps - sqrt(1 - a) x0) for a point mass at `target`
        a = abar[t][:, None]
        eps = (x - a.sqrt() * target) / (1 - a).sqrt()
        return eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * target

    out = diff.sample(oracle, (2, 4), steps=20, sampler=sampler, generator=torch.Generator().manual_seed(0),
                      clip=clip)
    # every step's x0 estimate is the target; the original clamps it to [-1, 1] (clip_denoised=True)
    torch.testing.assert_close(out, target.clamp(-1, 1) if clip else target, atol=2e-2, rtol=0)


def _abar(t: int) -> float:
    """alpha_bar of the 1000-step cosine schedule at integer t, from the closed form (betas clipped at 0.999)."""
    f = lambda s: math.cos((s / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return math.prod(1 - min(1 - f(i + 1) / f(i), 0.999) for i in range(t + 1))


@pytest.mark.parametrize("clip", [True, False])
def test_ddim_clipping_follows_guided_diffusion(clip):
    """eps-model 0.5 x, 4 DDIM steps (t = 750, 500, 250, 0; the last goes to alpha_bar 1): per step
    x0 = (x - sqrt(1-a) eps) / sqrt(a), clamped to [-1, 1], eps re-derived from the clamped x0, then
    x = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps (guided-diffusion ddim_sample, eta 0)."""
    model = lambda x, t: 0.5 * x  # noqa: E731
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for t, t_prev in ((750, 500), (500, 250), (250, 0), (0, None)):
        a, a_prev = _abar(t), 1.0 if t_prev is None else _abar(t_prev)
        x0 = (x - math.sqrt(1 - a) * model(x, t)) / math.sqrt(a)
        if clip:
            x0 = x0.clamp(-1, 1)
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    got = GaussianDiffusion(1000).sample(model, (3, 5), steps=4, sampler="ddim",
                                         generator=torch.Generator().manual_seed(7), clip=clip)
    torch.testing.assert_close(got.double(), x, atol=1e-4, rtol=1e-4)
    if clip:  # clamping changes the result here
        unclipped = GaussianDiffusion(1000).sample(model, (3, 5), steps=4, sampler="ddim",
                                                   generator=torch.Generator().manual_seed(7), clip=False)
        assert (got - unclipped).abs().max() > 0.1


def test_ddpm_clipping_takes_the_posterior_mean_of_the_clamped_x0():
    """eps-model 0.5 x, 2 DDPM steps (t = 500, 0): x0 clamped, mean = sqrt(a_prev) b / (1-a) x0 +
    sqrt(1-b) (1-a_prev) / (1-a) x with b = 1 - a/a_prev, plus sqrt(b (1-a_prev)/(1-a)) z for t > 0 (z drawn after
    the starting noise from the same generator)."""
    model = lambda x, t: 0.5 * x  # noqa: E731
    g = torch.Generator().manual_seed(3)
    x, z = torch.randn(2, 6, generator=g).double(), torch.randn(2, 6, generator=g).double()
    for t, t_prev in ((500, 0), (0, None)):
        a, a_prev = _abar(t), 1.0 if t_prev is None else _abar(t_prev)
        b = 1 - a / a_prev
        x0 = ((x - math.sqrt(1 - a) * model(x, t)) / math.sqrt(a)).clamp(-1, 1)
        mean = math.sqrt(a_prev) * b / (1 - a) * x0 + math.sqrt(1 - b) * (1 - a_prev) / (1 - a) * x
        x = mean + (math.sqrt(b * (1 - a_prev) / (1 - a)) * z if t_prev is not None else 0)
    got = GaussianDiffusion(1000).sample(model, (2, 6), steps=2, sampler="ddpm",
                                         generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got.double(), x, atol=1e-4, rtol=1e-4)


def test_bev_loss_is_the_masked_mean_per_sample():
    """2 samples: the posterior draw, then t and eps per row (the generator's order); each sample's mean of
    (eps - model(x_t, t))^2 over the channels of its valid cells only."""
    cfg = preset("tiny", bev_latent_grid=4, latent_channels=2, denoiser_dim=16, denoiser_heads=2,
                 latent_shift=0.0, latent_scale=1.0)
    torch.manual_seed(0)
    from ross3d.model.denoiser import Denoiser

    den = Denoiser(8, 12, 16, 1, 2, 2.0, 2, 2)
    for p in den.parameters():  # adaLN-zero starts at 0: give every weight a value so cells differ
        p.data.normal_(0, 0.3)
    cond = torch.randn(2, 4, 16)
    mean, logvar = torch.randn(2, 2, 4, 4), torch.full((2, 2, 4, 4), -4.0)
    valid = torch.tensor([[[True, False], [True, True]], [[False, False], [False, True]]])
    got = bev_loss(cfg, den, GaussianDiffusion(1000), cond, mean, logvar, valid, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
    x0 = z.reshape(2, 2, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(2, 8, 2, 2)  # 2x2 space-to-channel
    t = torch.randint(0, 1000, (2,), generator=g)
    eps = torch.randn(2, 8, 2, 2, generator=g)
    want = []
    for b in range(2):
        a = _abar(int(t[b]))
        xt = math.sqrt(a) * x0[b] + math.sqrt(1 - a) * eps[b]
        err = (eps[b] - den(xt[None], t[b:b + 1], cond[b:b + 1], "bev")[0]) ** 2  # (8, 2, 2)
        want.append(err[:, valid[b]].mean())
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=1e-4)


def test_masking_step_schedule_counts():
    cfg = preset("7b")
    eligible = torch.tensor([True, True, False])
    for step in range(8):
        on = masking_samples(cfg, eligible, step)
        assert on.tolist() == ([True, True, False] if step % 4 == 0 else [False] * 3)
    mask = draw_view_mask(cfg, torch.tensor([True, True, False]), torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [8, 8, 0]
    assert not torch.equal(mask[0], mask[1])


def test_masking_sample_schedule_is_bernoulli():
    cfg = preset("tiny", mask_schedule="sample")
    gen = torch.Generator().manual_seed(0)
    on = masking_samples(cfg, torch.ones(4000, dtype=torch.bool), 1, gen)
    assert abs(on.float().mean().item() - 0.25) < 0.03
    mask = draw_view_mask(cfg, on, gen)
    assert set(mask.sum(1).tolist()) == {0, cfg.n_masked} and cfg.n_masked == 2


def test_config_validation_and_presets():
    assert PRESETS["7b"].visual_len == 6720 and PRESETS["7b"].n_masked == 8
    with pytest.raises(ConfigError, match="mask_schedule"):
        preset("tiny", mask_schedule="often")
    with pytest.raises(ConfigError, match="preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="initializer_range"):
        preset("tiny", initializer_range=0)


@pytest.mark.parametrize("std", [0.02, 0.1])
def test_initializer_range_sets_the_fresh_language_models_weight_std(std):
    torch.manual_seed(0)
    model = Ross3D(preset("tiny", initializer_range=std))
    for weight in (model.llm.model.embed_tokens.weight, model.llm.model.layers[0].self_attn.q_proj.weight,
                   model.llm.model.layers[1].mlp.down_proj.weight):
        assert abs(weight.std().item() - std) < 0.05 * std  # N(0, std) over >= 9,000 numbers
    bound = 1 / math.sqrt(32)  # not the LM's: torch's Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 32
    assert abs(model.projector.linear_1.weight.std().item() - bound / math.sqrt(3)) < 0.005


def test_labelled_only_lm_loss_equals_full_cross_entropy():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 10, 8)
    labels = torch.randint(0, 50, (3, 10))
    labels[0, :6] = -100
    labels[1, ::2] = -100
    labels[2] = -100
    got = lm_losses(hidden, labels, head)
    for b in range(2):
        want = F.cross_entropy(head(hidden[b, :-1]), labels[b, 1:], ignore_index=-100)
        torch.testing.assert_close(got[b], want)
    assert got[2] == 0
    torch.testing.assert_close(lm_losses(hidden, labels, head, labelled_only=False), got)


def test_infonce_on_a_hand_computed_example():
    head = GroundingHead(4, temperature=0.5)
    for mlp in (head.obj, head.query):  # identity-like projections: Linear=I, ReLU, LayerNorm(affine 1/0), Linear=I
        for layer in (mlp[0], mlp[3]):
            layer.weight.data.copy_(torch.eye(4))
            layer.bias.data.zero_()
    head.zero_target.data.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    scores = torch.tensor([0.5, -0.2, 0.1])
    loss = head.loss(scores, torch.tensor([True, True]))
    e = [math.exp(s / 0.5) for s in (0.5, -0.2, 0.1)]
    assert loss.item() == pytest.approx(-math.log((e[0] + e[1]) / sum(e)), rel=1e-6)
    none = head.loss(scores, torch.tensor([False, False]))
    assert none.item() == pytest.approx(-math.log(e[2] / sum(e)), rel=1e-6)
    q = torch.tensor([1.0, 2.0, 0.0, 0.0])
    objs = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
    got = head.scores(q, objs)
    ln = lambda x: F.layer_norm(torch.relu(x), (4,))  # noqa: E731
    cand = torch.cat([objs, head.zero_target.data[None]])
    want = F.cosine_similarity(ln(cand), ln(q)[None], dim=-1)
    torch.testing.assert_close(got, want)


def test_object_features_mean_member_patches_plus_centre_pe():
    feats = torch.randn(2, 4, 6)  # V=2, P=4, D=6
    member = torch.zeros(2, 2, 4, dtype=torch.bool)
    member[0, 0, 1] = member[0, 1, 3] = True
    centres = torch.tensor([[1, 2, 3], [4, 5, 6]])
    got = object_features(feats, member, centres)
    torch.testing.assert_close(got[0], (feats[0, 1] + feats[1, 3]) / 2 + sincos_3d(centres[0], 6))
    torch.testing.assert_close(got[1], sincos_3d(centres[1], 6))  # no member patch: zero + PE
