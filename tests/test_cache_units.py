"""Units of stage 2: view preparation against an independent PIL reference, bf16 storage, fingerprint diffs,
the tiny encoders and the SigLIP layer rule, and one-line errors on bad input."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cache_helpers import reference_view
from ross3d.cache import tiny
from ross3d.cache.encoders import VaeEncoder, VisionEncoder
from ross3d.cache.fingerprint import differences, digest
from ross3d.cache.inputs import read_prep
from ross3d.cache.preprocess import bev_mask, decode_view, to_unit_range
from ross3d.cache.run import CacheOptions
from ross3d.cache.store import bf16_bits, bf16_to_float32
from ross3d.errors import ConfigError, InputError
from ross3d_cli.app import app


def _jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("color, depth", [((1296, 968), (640, 480)), ((80, 60), (64, 48)), ((300, 200), (90, 60))])
def test_view_preparation_matches_the_original(color, depth):
    jpeg = _jpeg(*color)
    view = decode_view(jpeg, *depth)
    assert view.shape == (384, 384, 3) and view.dtype == np.uint8
    np.testing.assert_allclose(to_unit_range(view).numpy(), reference_view(jpeg, *depth).numpy(), atol=1e-6)


def test_bev_mask_drops_black_cells():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, 32:] = 200
    mask = bev_mask(rgb)
    assert mask.shape == (27, 27) and mask[:, -1].all() and not mask[:, 0].any()


def test_bev_mask_lies_on_the_latent_cells_and_432_px_keeps_the_fingerprint():
    from ross3d.cache.preprocess import PARAMS, bev_params
    from ross3d.errors import InputError

    assert bev_params(432, 8, "m.json") == PARAMS and PARAMS.mask_size == 27  # 432 / 8 = 54 latent, 27 cells
    assert bev_params(64, 8, "m.json").mask_size == 4 and bev_params(96, 4, "m.json").mask_size == 12
    with pytest.raises(InputError, match=r"m.json: BEV renders of 72 px .* use a multiple of 16"):
        bev_params(72, 8, "m.json")


def test_bf16_storage_is_torchs_rounding():
    x = torch.randn(1000) * torch.logspace(-30, 30, 1000)
    bits = bf16_bits(x)
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(bf16_to_float32(bits), x.to(torch.bfloat16).float().numpy())


def test_differences_name_the_changed_keys():
    old = {"vae": {"weights_sha256": "a" * 64, "config": {"latent_channels": 16}}, "prep": "p1"}
    new = {"vae": {"weights_sha256": "b" * 64, "config": {"latent_channels": 16}}, "prep": "p1", "vision": None}
    diffs = differences(old, new)
    assert len(diffs) == 1 and diffs[0].startswith("vae.weights_sha256: ")
    assert digest(old) != digest(new) and digest(old) == digest(json.loads(json.dumps(old)))


def test_tiny_encoders_and_layer_rule(tmp_path):
    vae_dir = tiny.save_tiny_vae(tmp_path / "vae")
    assert "random weights" in (vae_dir / "README.md").read_text()
    vae = VaeEncoder(vae_dir, torch.device("cpu"))
    mean, logvar = vae.encode(torch.rand(2, 3, 216, 216) * 2 - 1)
    assert mean.shape == logvar.shape == (2, 16, 27, 27)
    assert (vae.shift_factor, vae.scaling_factor, vae.downsample) == (0.1159, 0.3611, 8)
    full = tiny.full_flux_vae_config()
    assert full["block_out_channels"] == [128, 256, 512, 512] and not full["use_quant_conv"]
    siglip_dir = tiny.save_tiny_siglip(tmp_path / "siglip", num_layers=2)
    vision = VisionEncoder(siglip_dir, torch.device("cpu"))
    x = torch.rand(2, 3, 384, 384) * 2 - 1
    features = vision.encode(x)
    direct = vision.model(pixel_values=x, output_hidden_states=True)
    assert features.shape == (2, 729, 32) and len(direct.hidden_states) == 3
    torch.testing.assert_close(features, direct.hidden_states[-2], rtol=0, atol=0)
    assert not torch.allclose(features, direct.last_hidden_state)


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        VaeEncoder(tmp_path, torch.device("cpu"))
    with pytest.raises(InputError, match="not a finished PREP_DIR"):
        read_prep(tmp_path, ("uniform",))
    with pytest.raises(ConfigError, match="strategy"):
        CacheOptions(strategies=("random",))
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and "cannot read cache manifest" in result.output
    result = CliRunner().invoke(app, ["cache-latents", str(tmp_path), str(tmp_path / "c"), "--vae", str(tmp_path),
                                      "--strategy", "all"])
    assert result.exit_code == 2 and "Invalid value for '--strategy'" in result.output  # a usage error
    assert len(result.output.strip().splitlines()) == 1
