"""Vision-only scenes and the semi-supervised protocol (issue 22): `prep vision-only` appends rows once and
atomically, a vision-only batch trains only the reconstruction losses, `data.labelled_fraction` splits the training
scenes deterministically without reading val, and a run mixing vision-only and text steps resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ross3d.errors import ConfigError
from ross3d.prep.qa.schema import Sample, make_sample_id, read_samples_table, write_samples
from ross3d.prep.vision_only import append_vision_only
from ross3d.train.config import DataConfig, load_train_config
from ross3d.train.labelled import split_scenes, training_rows
from ross3d.train.loop import train
from ross3d.train.metrics import read_log
from ross3d_cli.app import app
from train_fixtures import SCENES, build_train_inputs

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = ("The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the "
            "video and answer the following questions.")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The trainer's tiny inputs (two scans, both with text samples) plus a vision-only row of the first scene."""
    inputs = build_train_inputs(tmp_path_factory.mktemp("vision_only_inputs"))
    assert append_vision_only(inputs["prep"], [SCENES[0]]).added == [SCENES[0]]
    return inputs


def _overrides(inputs, out: Path, *extra: str) -> list[str]:
    return [f"data.prep_dir={inputs['prep']}", f"data.cache_dir={inputs['cache']}", f"output_dir={out}",
            "data.num_workers=1", "optim.lr=0.001", "optim.warmup_ratio=0.25", "data.spatial_instruction=true",
            "tensorboard=false", "model.language_warmup=null", "data.pack_turns=1", *extra]


def _qa(scene_id: str, split: str, k: int) -> Sample:
    return Sample(make_sample_id("scanqa", split, f"{scene_id}-{k}"), split, "scanqa", scene_id,
                  [("human", "<image> what is here?"), ("gpt", "a chair")], ["a chair"])


# ---- `ross3d prep vision-only`

@pytest.fixture
def prep(tmp_path):
    """A PREP_DIR with four prepared scenes (one failed) and samples: 0000 train, 0001 train and val, 0002 val."""
    prep = tmp_path / "prep"
    prep.mkdir()
    pq.write_table(pa.table({"scene_id": ["scene0000_00", "scene0001_00", "scene0002_00", "scene0003_00",
                                          "scene0004_00"],
                             "status": ["ok", "ok", "ok", "ok", "failed"]}), prep / "scenes.parquet")
    write_samples(prep / "samples.parquet", [_qa("scene0000_00", "train", 0), _qa("scene0001_00", "train", 0),
                                             _qa("scene0001_00", "val", 1), _qa("scene0002_00", "val", 0)])
    return prep


def _invoke(*args: str):
    return CliRunner().invoke(app, ["prep", "vision-only", *map(str, args)])


def test_prep_vision_only_appends_once_and_keeps_the_rows(prep):
    path = prep / "samples.parquet"
    before = read_samples_table(path).to_pylist()
    result = _invoke(prep, "--scenes", "scene0000_00,scene0003_00")
    assert result.exit_code == 0, result.output
    assert "2 vision-only samples added, 0 already present" in result.output
    after = read_samples_table(path).to_pylist()
    assert after[:4] == before
    assert after[4:] == [{"sample_id": f"vision_only/train/{s}", "split": "train", "task": "vision_only",
                          "scene_id": s, "conversations": [], "answers": [], "object_ids": [], "box_input": None,
                          "question_type": None} for s in ("scene0000_00", "scene0003_00")]
    written = path.read_bytes()
    result = _invoke(prep, "--scenes", "scene0003_00,scene0000_00")  # a rerun adds nothing, writes nothing
    assert result.exit_code == 0 and "0 vision-only samples added, 2 already present" in result.output
    assert path.read_bytes() == written
    # --all: the prepared scenes without samples of their own (0003 has its row now; 0004 failed): none
    assert _invoke(prep, "--all").exit_code == 0 and path.read_bytes() == written


def test_prep_vision_only_reads_a_scene_list(prep, tmp_path):
    (tmp_path / "good.txt").write_text("scene0003_00\n\nscene0000_00\n")
    assert _invoke(prep, "--scene-list", tmp_path / "good.txt").exit_code == 0
    rows = read_samples_table(prep / "samples.parquet").to_pylist()
    assert [r["scene_id"] for r in rows if r["task"] == "vision_only"] == ["scene0003_00", "scene0000_00"]
    (tmp_path / "bad.txt").write_text("scene0003_00\n../etc\n")
    result = _invoke(prep, "--scene-list", tmp_path / "bad.txt")
    assert result.exit_code == 1 and f"{tmp_path / 'bad.txt'}: line 2: scene id '../etc'" in result.output


def test_prep_vision_only_all_takes_scenes_without_samples(prep):
    result = _invoke(prep, "--all")
    assert result.exit_code == 0, result.output
    rows = read_samples_table(prep / "samples.parquet").to_pylist()
    assert [r["scene_id"] for r in rows if r["task"] == "vision_only"] == ["scene0003_00"]


@pytest.mark.parametrize("args,message", [
    (["--scenes", "scene0002_00"], "samples.parquet: scene 'scene0002_00' is held out"),
    (["--scenes", "scene0009_00"], "scenes.parquet: scene 'scene0009_00' is not a prepared scene"),
    (["--scenes", "scene0004_00"], "scenes.parquet: scene 'scene0004_00' failed in prep scannet"),
    (["--scenes", "../scene0000_00"], "--scenes: scene id '../scene0000_00' is not a safe name"),
    (["--scenes", "scene0000_00", "--all"], "give one of --scenes, --scene-list or --all"),
    ([], "give one of --scenes, --scene-list or --all"),
])
def test_refused_scenes_are_one_line_errors_and_write_nothing(prep, args, message):
    written = (prep / "samples.parquet").read_bytes()
    result = _invoke(prep, *args)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (prep / "samples.parquet").read_bytes() == written


def test_prep_qa_keeps_vision_only_rows_but_those_of_scenes_it_holds_out(tmp_path):
    from qa_helpers import write_json, write_objects
    from test_prep_qa import SCANQA_TRAIN, SCANQA_VAL

    from ross3d.prep.qa.run import QaSources, prep_qa

    prep = tmp_path / "prep"
    write_objects(prep)  # scenes scene0000_00 and scene0001_00, no samples yet
    assert append_vision_only(prep, ["scene0000_00", "scene0001_00"]).added == ["scene0000_00", "scene0001_00"]
    write_json(tmp_path / "scanqa" / "ScanQA_v1.0_train.json", SCANQA_TRAIN)  # scene0000_00
    write_json(tmp_path / "scanqa" / "ScanQA_v1.0_val.json", SCANQA_VAL)  # scene0001_00: held out now
    report = prep_qa(prep, QaSources(scanqa=tmp_path / "scanqa"))
    rows = read_samples_table(prep / "samples.parquet").to_pylist()
    assert [(r["task"], r["split"], r["scene_id"]) for r in rows] == [  # ScanQA train: a row per answer (2)
        ("scanqa", "train", "scene0000_00"), ("scanqa", "train", "scene0000_00"), ("scanqa", "val", "scene0001_00"),
        ("vision_only", "train", "scene0000_00")]
    assert report.rows[("vision_only", "train")] == 1
    assert "1 vision-only rows dropped, their scenes are held out now: scene0001_00" in report.notes


# ---- the labelled split

def _split_inputs(tmp_path: Path, rows: list[Sample]) -> DataConfig:
    write_samples(tmp_path / "samples.parquet", rows)
    return DataConfig(prep_dir=str(tmp_path), labelled_fraction=0.3, labelled_seed=7, unlabelled_as_vision_only=True)


TRAIN_SCENES = [f"scene{i:04d}_00" for i in range(10)]
VAL_SCENES = ["scene0100_00", "scene0101_00", "scene0102_00"]


def test_labelled_fraction_splits_training_scenes_deterministically_and_never_reads_val(tmp_path):
    rows = [_qa(s, "train", k) for s in TRAIN_SCENES for k in range(2)] + [_qa(s, "val", 0) for s in VAL_SCENES]
    config = _split_inputs(tmp_path, rows)
    kept, split = training_rows(config)
    labelled = set(split.labelled)
    assert len(labelled) == 3 and set(split.unlabelled) == set(TRAIN_SCENES) - labelled  # round(0.3 x 10)
    assert sorted(r.scene_id for r in kept if r.task == "scanqa") == sorted(2 * list(labelled))
    assert [r.scene_id for r in kept if r.task == "vision_only"] == sorted(set(TRAIN_SCENES) - labelled)
    assert all(r.split == "train" and r.scene_id not in VAL_SCENES for r in kept)
    assert training_rows(config)[1] == split  # the same seed: the same split
    (tmp_path / "reordered").mkdir()  # the row order of samples.parquet and the val rows change nothing
    reordered = _split_inputs(tmp_path / "reordered", [r for r in reversed(rows) if r.split == "train"])
    assert training_rows(reordered)[1].labelled == split.labelled
    config.labelled_seed = 8
    assert set(training_rows(config)[1].labelled) != labelled
    config.labelled_seed, config.labelled_fraction = 7, 0.5  # a larger fraction keeps the smaller one's scenes
    assert len(training_rows(config)[1].labelled) == 5 and labelled < set(training_rows(config)[1].labelled)
    config.unlabelled_as_vision_only = False
    assert {r.task for r in training_rows(config)[0]} == {"scanqa"}


def test_a_fresh_tokenizer_learns_only_the_labelled_scenes_texts(tmp_path):
    from ross3d.train.config import TrainConfig
    from ross3d.train.model_setup import _training_texts

    rows = [Sample(make_sample_id("scanqa", "train", s), "train", "scanqa", s,
                   [("human", "<image> what is here?"), ("gpt", f"answer of {s}")], [f"answer of {s}"])
            for s in TRAIN_SCENES]
    config = TrainConfig(data=_split_inputs(tmp_path, rows))
    labelled = training_rows(config.data)[1].labelled
    assert sorted(_training_texts(config)) == sorted(["  what is here?" for _ in labelled]
                                                      + [f"answer of {s}" for s in labelled])


def test_the_labelled_count_rounds_halves_up():
    assert [len(split_scenes(TRAIN_SCENES, f, 0)[0]) for f in (0.0, 0.04, 0.05, 0.25, 0.35, 1.0)] == [0, 0, 1, 3, 4,
                                                                                                      10]


def test_semi_supervised_options_are_checked():
    with pytest.raises(ConfigError, match="data.labelled_fraction"):
        load_train_config(ROOT / "configs/tiny.yaml", ["data.labelled_fraction=1.5"])
    with pytest.raises(ConfigError, match="data.unlabelled_as_vision_only: needs 'vision_only' in data.tasks"):
        load_train_config(ROOT / "configs/tiny.yaml", ["data.unlabelled_as_vision_only=true", "data.tasks=[scanqa]"])


# ---- training on vision-only samples

def test_a_vision_only_batch_trains_only_the_reconstruction_losses(inputs, tmp_path):
    from ross3d.chat import ChatEncoder
    from ross3d.train.data import MicroBatchDataset, load_text_samples
    from ross3d.train.model_setup import build_model

    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, "data.tasks=[vision_only]", "data.labelled_fraction=0.5", "data.labelled_seed=1",
        "data.unlabelled_as_vision_only=true", "model.mask_schedule=step"))  # configs/tiny.yaml masks per sample
    model, tokenizer = build_model(config, tmp_path / "tokenizer")
    image = model.config.image_token_id
    samples = load_text_samples(config.data, ChatEncoder(tokenizer, image))
    assert sorted((s.task, s.scene_id) for s in samples) == [("vision_only", s) for s in SCENES]
    # the system turn, then a user turn of the image and the spatial sentence; nothing to predict
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    expected = (encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") + encode("<|im_start|>user\n")
                + [image] + encode(f"\n{SENTENCE}\n<|im_end|>\n"))
    assert all(s.input_ids.tolist() == expected for s in samples)
    batch = MicroBatchDataset(samples, config.data, tokenizer.pad_token_id)[[0, 1]]
    assert batch["labels"].eq(-100).all() and not batch["grounding"].any()

    torch.manual_seed(0)
    for p in model.denoiser.parameters():  # off adaLN-zero, so the conditions reach the denoiser's output
        p.data.add_(torch.randn_like(p) * 0.02)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for step, masks in ((0, True), (1, False)):  # the original's schedule: step 0 masks views, step 1 does not
        out = model(batch, global_step=step, generator=torch.Generator().manual_seed(step))
        assert out["lm_loss"].item() == 0.0 and out["ground_loss"].item() == 0.0
        assert out["bev_loss"] > 0 and (out["vm_loss"] > 0) == masks
        text_grads = torch.autograd.grad(out["lm_loss"] + out["ground_loss"], params, retain_graph=True,
                                         allow_unused=True)
        assert all(g is None or not g.any() for g in text_grads)
        model.zero_grad()
        out["loss"].backward()
        reached = {"projector": model.projector.linear_1.weight.grad,
                   **{f"llm layer {i}": layer.self_attn.q_proj.weight.grad
                      for i, layer in enumerate(model.llm.model.layers)}}
        assert all(g is not None and g.abs().sum() > 0 for g in reached.values()), step


def test_resume_is_exact_in_a_run_mixing_vision_only_and_text(inputs, tmp_path):
    """scene0000_00 labelled (its 4 QA samples and its prep'd vision-only row), scene0001_00 unlabelled (its
    vision-only sample made by the run): per epoch 2 QA steps and 1 vision-only step of 2 samples."""
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, "data.tasks=[scanqa, vision_only]", "data.labelled_fraction=0.5", "data.labelled_seed=1",
        "data.unlabelled_as_vision_only=true", "micro_batch=2", "grad_accum=1", "epochs=2", "save_every=2",
        "keep_checkpoints=3", "model.mask_schedule=step"))  # the original's schedule (configs/tiny.yaml: per sample)
    train(config)
    before = read_log(tmp_path / "log.jsonl")
    split = json.loads((tmp_path / "labelled_split.json").read_text())
    assert (split["labelled"], split["unlabelled"]) == ([SCENES[0]], [SCENES[1]])
    assert [r["task"] for r in before].count("vision_only") == 2 and len(before) == 6
    for r in before:
        if r["task"] == "vision_only":
            assert r["lm_loss"] == 0 and r["ground_loss"] == 0 and r["bev_loss"] > 0
            assert (r["vm_loss"] > 0) == ((r["step"] - 1) % 4 == 0)  # masking reads the optimizer step
        else:
            assert r["task"] == "scanqa" and r["lm_loss"] > 0
    (tmp_path / "checkpoints" / "latest_step").write_text("step_2")
    train(config, resume=True)
    after = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(before, after):
        for key in ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss", "grad_norm", "task"):
            assert a[key] == b[key], (a["step"], key)
