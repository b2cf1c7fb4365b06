"""Reconstruction previews: targets equal the training path's posterior targets, latent errors, view masks, decoding
shapes and ranges, the VAE fingerprint check, and the CLI's picture and numbers on a real tiny cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ross3d.cache import tiny
from ross3d.errors import InputError
from ross3d.model.config import preset
from ross3d.model.latents import latent_targets
from ross3d.model.ross3d import Ross3D
from ross3d.model.synthetic import random_batch
from ross3d.visualize.figure import decode_images, write_figure
from ross3d.visualize.reconstruct import latent_error, mean_targets, reconstruct, view_mask_for
from ross3d.visualize.vae import check_vae
from train_fixtures import build_train_inputs

ROOT = Path(__file__).resolve().parents[1]

# 4 frames (one masked), a 7x7 view grid, a 16x16 BEV latent grouped to 8x8
CONFIG = preset("tiny", n_frames=4, pool_grid=7, bev_latent_grid=16, denoiser_depth=2, denoiser_dim=64)


def test_targets_are_the_training_targets_of_the_posterior_mean():
    batch = random_batch(CONFIG, batch_size=1, seed=5)
    mean = batch["view_mean"][0]
    # the training path with a (numerically) zero variance: the posterior sample is the mean
    expected = latent_targets(mean, torch.full_like(mean, -30.0), CONFIG.pool_grid, CONFIG.latent_shift,
                              CONFIG.latent_scale)
    torch.testing.assert_close(mean_targets(CONFIG, mean, CONFIG.pool_grid), expected, atol=1e-5, rtol=0)
    bev = batch["bev_mean"]
    expected = latent_targets(bev, torch.full_like(bev, -30.0), CONFIG.bev_grid, CONFIG.latent_shift,
                              CONFIG.latent_scale)
    torch.testing.assert_close(mean_targets(CONFIG, bev, CONFIG.bev_grid), expected, atol=1e-5, rtol=0)


def test_latent_error_against_numpy_and_on_masked_cells():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, 5, generator=g), torch.randn(8, 5, 5, generator=g)
    cells = torch.rand(5, 5, generator=g) > 0.5
    mse, cos = latent_error(a, b, cells)
    x, y = a.numpy()[:, cells.numpy()].ravel(), b.numpy()[:, cells.numpy()].ravel()
    assert mse == pytest.approx(float(np.mean((x - y) ** 2)), rel=1e-5)
    assert cos == pytest.approx(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)), rel=1e-5)
    assert latent_error(a, a) == pytest.approx((0.0, 1.0))


def test_view_mask_choice_and_refusals():
    mask = view_mask_for(CONFIG, None, seed=7, device=torch.device("cpu"))
    assert mask.shape == (1, CONFIG.n_frames) and int(mask.sum()) == CONFIG.n_masked
    assert torch.equal(mask, view_mask_for(CONFIG, None, seed=7, device=torch.device("cpu")))
    assert view_mask_for(CONFIG, [1, 3], 0, torch.device("cpu"))[0].nonzero().flatten().tolist() == [1, 3]
    for bad in ([4], [0, 1, 2, 3], [-1]):
        with pytest.raises(InputError, match="--mask-views"):
            view_mask_for(CONFIG, bad, 0, torch.device("cpu"))


def test_decoded_images_shapes_ranges_and_picture(tmp_path):
    vae = tiny.build_vae(tiny.tiny_flux_vae_config())
    model = Ross3D(CONFIG)
    batch = random_batch(CONFIG, batch_size=1, seed=6)
    mask = view_mask_for(CONFIG, [0, 3], 0, torch.device("cpu"))
    recs = reconstruct(model, batch, mask, steps=4, seed=0)
    images = decode_images(CONFIG, recs, vae)
    side_view, side_bev = 8 * 2 * CONFIG.pool_grid, 8 * 2 * CONFIG.bev_grid
    assert [im.shape for im in images] == [(3, side_view, side_view, 3)] * 2 + [(3, side_bev, side_bev, 3)]
    for im in images:
        assert im.dtype == np.float32 and im.min() >= 0.0 and im.max() <= 1.0 and im.std() > 0
    # the ground-truth column is the VAE decoding of the (resized) posterior mean, computed here directly
    z = torch.nn.functional.interpolate(batch["view_mean"][0, [3]], size=(2 * CONFIG.pool_grid,) * 2, mode="bilinear",
                                        align_corners=False)
    with torch.no_grad():
        direct = ((vae.decode(z).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(images[1][0], direct, atol=1e-4)
    out = write_figure(tmp_path / "sub" / "r.png", recs, images, "scene | sample | step 3")
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[1] > png.size[0] > 300


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A real tiny PREP_DIR + CACHE_DIR (tiny VAE at root/vae) and a tiny model folder sized for that cache."""
    from ross3d.model.checkpoint import save_model
    from ross3d.model.tokenizer import build_tokenizer
    from ross3d.model.tokens import add_tokens
    from ross3d.cache.model_sizes import cache_sizes

    root = tmp_path_factory.mktemp("visualize")
    found = build_train_inputs(root)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(["what is in the middle of the room", "this is the table in the room"], 300)
    model = Ross3D(preset("tiny", **cache_sizes(found["cache"], "uniform")))
    ids = add_tokens(tokenizer, model.llm)
    model.config = model.config.replace(ground_token_id=ids["<ground>"], coord_token_id=ids["<coord>"])
    save_model(model, root / "run" / "checkpoints" / "step_12", tokenizer)
    return {**found, "vae": root / "vae", "model": root / "run" / "checkpoints" / "step_12", "root": root}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ross3d_cli.app", "visualize", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_vae_fingerprint_check_refuses_another_vae(inputs, tmp_path):
    check_vae(inputs["vae"], inputs["cache"])  # the cache's own VAE passes
    other = tiny.save_tiny_vae(tmp_path / "other", seed=1)  # same architecture, other weights
    with pytest.raises(InputError, match="weights_sha256"):
        check_vae(other, inputs["cache"])
    with pytest.raises(InputError, match="no config.json"):
        check_vae(tmp_path, inputs["cache"])
    proc = _cli(str(inputs["model"]), "--cache", str(inputs["cache"]), "--samples",
                str(inputs["prep"] / "samples.parquet"), "--scene", "scene0000_00", "--vae", str(other),
                "--out", str(tmp_path / "x.png"), "--steps", "2")
    assert proc.returncode != 0 and "not the VAE this cache was built with" in proc.stderr + proc.stdout
    assert not (tmp_path / "x.png").exists()


def test_cli_writes_picture_and_json_numbers(inputs, tmp_path):
    samples = inputs["prep"] / "samples.parquet"
    sample_id = "scanqa/train/scene0001_00-2"
    out = tmp_path / "rec.png"
    proc = _cli(str(inputs["model"]), "--cache", str(inputs["cache"]), "--samples", str(samples), "--scene",
                "scene0001_00", "--sample-id", sample_id, "--vae", str(inputs["vae"]), "--mask-views", "1,6",
                "--steps", "3", "--sampler", "ddpm", "--seed", "5", "--out", str(out), "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert (report["scene_id"], report["sample_id"], report["step"]) == ("scene0001_00", sample_id, "12")
    assert report["masked_views"] == [1, 6] and report["picture"] == str(out)
    recs = report["reconstructions"]
    assert [(r["kind"], r["view"]) for r in recs] == [("view", 1), ("view", 6), ("bev", None)]
    for r in recs:
        assert all(np.isfinite(r[k]) for k in ("mse", "cosine", "baseline_mse", "baseline_cosine"))
        assert -1 <= r["cosine"] <= 1 and r["mse"] > 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[1] > png.size[0]
    # the sample belongs to another scene: a one-line error naming the file
    proc = _cli(str(inputs["model"]), "--cache", str(inputs["cache"]), "--samples", str(samples), "--scene",
                "scene0000_00", "--sample-id", sample_id, "--json", "--steps", "2")
    assert proc.returncode != 0 and "belongs to scene0001_00" in proc.stderr + proc.stdout
