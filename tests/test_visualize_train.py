"""The trainer's `visualize_every` option on a real tiny cache: pictures and numbers at exactly the right steps,
beside log.jsonl; a missing VAE or held-out sample is a config error naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ross3d.errors import ConfigError
from ross3d.train.config import load_train_config
from ross3d.train.loop import train
from ross3d.visualize.preview import held_out_row
from train_fixtures import SCENES, build_train_inputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize_train")
    return {**build_train_inputs(root), "vae": root / "vae"}


def _config(inputs, out: Path, *extra: str):
    return load_train_config(ROOT / "configs/tiny.yaml", [
        f"data.prep_dir={inputs['prep']}", f"data.cache_dir={inputs['cache']}", f"output_dir={out}", "max_steps=5",
        "visualize_steps=4", "micro_batch=1", "grad_accum=1", "data.num_workers=0", "tensorboard=false",
        "model.language_warmup=null", "data.pack_turns=1", *extra])


def test_training_writes_reconstruction_pictures_every_n_steps(inputs, tmp_path):
    sample = "scanqa/train/scene0001_00-1"
    out = tmp_path / "run"
    result = train(_config(inputs, out, "visualize_every=2", f"visualize_vae={inputs['vae']}",
                           f"visualize_sample={sample}"))
    assert result.steps == 5 and (out / "log.jsonl").is_file()
    assert sorted(p.name for p in out.glob("reconstruction_step_*")) == [
        "reconstruction_step_2.json", "reconstruction_step_2.png", "reconstruction_step_4.json",
        "reconstruction_step_4.png"]
    reports = [json.loads((out / f"reconstruction_step_{s}.json").read_text()) for s in (2, 4)]
    for step, report in zip((2, 4), reports):
        assert (report["step"], report["sample_id"], report["scene_id"]) == (step, sample, "scene0001_00")
        assert [r["kind"] for r in report["reconstructions"]] == ["view"] * len(report["masked_views"]) + ["bev"]
        with Image.open(out / f"reconstruction_step_{step}.png") as png:
            assert png.format == "PNG"
    # the same sample and view mask each time; the weights changed between the pictures, so the numbers did too
    assert reports[0]["masked_views"] == reports[1]["masked_views"] and len(reports[0]["masked_views"]) == 2
    assert reports[0]["reconstructions"] != reports[1]["reconstructions"]


def test_missing_vae_or_held_out_sample_is_a_config_error(inputs, tmp_path):
    with pytest.raises(ConfigError, match="visualize_vae"):
        _config(inputs, tmp_path, "visualize_every=2")
    # every fixture sample is in the training split: nothing is held out unless named
    with pytest.raises(ConfigError, match="visualize_sample"):
        held_out_row(inputs["prep"] / "samples.parquet", "train", ["scanqa"], set(SCENES), None)
    row = held_out_row(inputs["prep"] / "samples.parquet", "val", ["scanqa"], {SCENES[1]}, None)
    assert (row.split, row.task, row.scene_id) == ("train", "scanqa", SCENES[1])
