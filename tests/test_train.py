"""`ross3d train` on a real tiny cache (two scans -> prep scannet -> cache-latents with tiny encoders) and the real
tiny Ross3D model under DeepSpeed on CPU: outputs and log contract, ZeRO-3 = ZeRO-2, exact resume in a fresh
process, no encoder or image decoder in the training process, loss falls on a repeated batch, data and sampler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ross3d.errors import ConfigError, InputError
from ross3d.train.config import load_train_config
from ross3d.train.loop import train
from ross3d.train.metrics import read_log
from train_fixtures import SCENES, build_train_inputs

ROOT = Path(__file__).resolve().parents[1]
LOG_KEYS = {"step", "loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss", "lr", "grad_norm", "samples_per_s",
            "data_wait_fraction", "epoch", "task"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_train_inputs(tmp_path_factory.mktemp("train_inputs"))


def _overrides(inputs, out: Path, *extra: str) -> list[str]:
    return [f"data.prep_dir={inputs['prep']}", f"data.cache_dir={inputs['cache']}", f"output_dir={out}",
            "max_steps=4", "micro_batch=2", "grad_accum=2", "save_every=2", "data.num_workers=1",
            "optim.lr=0.001", "optim.warmup_ratio=0.25", "data.spatial_instruction=true",
            "model.language_warmup=null", "data.pack_turns=2", *extra]


def _spoil_records_after(log: Path, step: int) -> None:
    """Overwrite the loss of every record after `step`, so the records a resumed run must write itself cannot
    pass as the first run's (a resume that kept the old lines would otherwise compare equal)."""
    records = read_log(log)
    log.write_text("".join(json.dumps({**r, "loss": -1.0} if r["step"] > step else r) + "\n" for r in records))


@pytest.fixture(scope="module")
def zero2(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero2")
    seen = []
    result = train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out)), on_record=seen.append)
    return {"out": out, "result": result, "records": read_log(out / "log.jsonl"), "seen": seen,
            "threads": torch.get_num_threads()}


@pytest.fixture(scope="module")
def resumed(inputs, zero2):
    """Point the run at its step-2 checkpoint and resume through the CLI in a fresh process that reports which
    encoder / image-decoder modules it imported, and what each DataLoader worker (forked, so the spies are
    inherited) imported and decoded after each item it produced."""
    out = zero2["out"]
    workers = out.parent / f"{out.name}-workers"
    workers.mkdir()
    (out / "checkpoints" / "latest_step").write_text("step_2")
    _spoil_records_after(out / "log.jsonl", 2)
    args = ["train", str(ROOT / "configs/tiny.yaml"), "--resume"]
    for item in _overrides(inputs, out):
        args += ["--set", item]
    script = (
        "import json, sys\n"
        "import PIL.Image, PIL.ImageFile\n"
        "decoded = []  # forwarding spies: every PIL decode goes through Image.open and ImageFile.load\n"
        "_open, _load = PIL.Image.open, PIL.ImageFile.ImageFile.load\n"
        "def _spy_open(*a, **k):\n"
        "    decoded.append('open'); return _open(*a, **k)\n"
        "def _spy_load(self, *a, **k):\n"
        "    decoded.append('load'); return _load(self, *a, **k)\n"
        "PIL.Image.open, PIL.ImageFile.ImageFile.load = _spy_open, _spy_load\n"
        "watched = ('diffusers', 'cv2', 'torchvision', 'transformers.models.siglip', 'imageio')\n"
        "import os, ross3d.train.data as data\n"
        "_get = data.MicroBatchDataset.__getitem__\n"
        "def _spy_get(self, indices):\n"
        "    item = _get(self, indices)\n"
        "    found = sorted(m for m in sys.modules if m.startswith(watched))\n"
        f"    with open(f'{workers}/{{os.getpid()}}.json', 'w') as f:\n"
        "        json.dump(found + decoded, f)\n"
        "    return item\n"
        "data.MicroBatchDataset.__getitem__ = _spy_get\n"
        "from ross3d_cli.app import app\n"
        "print('PID=' + str(os.getpid()))\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "found = sorted(m for m in sys.modules if m.startswith(watched))\n"
        "print('MODULES=' + json.dumps(found + decoded))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = str(zero2["threads"])  # float sums are bitwise equal only at the same thread count
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES="))
    pid = next(x for x in proc.stdout.splitlines() if x.startswith("PID="))[len("PID="):]
    return {"records": read_log(out / "log.jsonl"), "modules": json.loads(line[len("MODULES="):]),
            "workers": {p.stem: json.loads(p.read_text()) for p in workers.iterdir()}, "pid": pid}


def test_run_writes_log_checkpoints_and_export(zero2):
    out, records = zero2["out"], zero2["records"]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(set(r) == LOG_KEYS for r in records)
    assert zero2["seen"] == records  # the console callback saw exactly the logged records
    assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 and 0 <= r["data_wait_fraction"] < 1
               for r in records)
    for r in records:
        parts = r["lm_loss"] + r["vm_loss"] + r["bev_loss"] + r["ground_loss"]
        assert r["loss"] == pytest.approx(parts, rel=1e-5)
        assert r["task"] in ("scanqa", "scan2cap", "scanrefer")  # every step holds one task group
    assert records[0]["lr"] == 0.0 and records[1]["lr"] == pytest.approx(0.001)  # warmup 1 step, then cosine
    assert records[3]["lr"] == pytest.approx(0.001 * 0.5 * (1 + np.cos(np.pi * 2 / 3)))
    assert (out / "loss_curve.png").stat().st_size > 1000 and any((out / "tensorboard").iterdir())
    assert load_train_config(out / "config.yaml").max_steps == 4  # the resolved config is a loadable config
    # the HF-style export holds exactly the engine's final weights (DeepSpeed's own module state at step 4)
    final = out / "checkpoints" / "final"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    exported = load_file(final / "model.safetensors")
    engine_state = torch.load(out / "checkpoints/step_4/mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert exported.keys() == engine_state.keys()
    assert all(torch.equal(exported[k], engine_state[k]) for k in exported)
    at_step2 = torch.load(out / "checkpoints/step_2/mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert not torch.equal(exported["projector.linear_1.weight"], at_step2["projector.linear_1.weight"])


def test_export_loads_as_a_model(zero2):
    from ross3d.model.checkpoint import load_model

    model, report = load_model(zero2["out"] / "checkpoints" / "final")
    assert not report.fresh and model.config.n_frames == 8 and model.config.bev_latent_grid == 54
    assert model.config.ground_token_id >= 0 and model.config.coord_token_id >= 0


def test_bev_renders_of_64_px_train(tmp_path):
    """A --bev-size other than 432 trains: 64 px BEVs give an 8x8 latent (tiny VAE, 8x downsampling) grouped to a
    4x4 mask, which sizes the model's BEV grid; the BEV loss is computed on it."""
    from ross3d.model.checkpoint import load_model

    small = build_train_inputs(tmp_path / "inputs", bev_size=64)
    out = tmp_path / "run"
    train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(small, out, "max_steps=2", "save_every=0",
                                                                   "tensorboard=false", "data.num_workers=0")))
    records = read_log(out / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert any(r["bev_loss"] > 0 for r in records)
    model, _ = load_model(out / "checkpoints" / "final")
    assert model.config.bev_latent_grid == 8 and model.config.bev_grid == 4


def test_export_has_a_model_card_with_step_and_config(zero2):
    """README.md of the export: the step the run ended at (4) and the run's config.yaml as its YAML block."""
    import yaml

    out = zero2["out"]
    card = (out / "checkpoints" / "final" / "README.md").read_text()
    assert "Exported at optimizer step 4." in card and "## Eval metrics" not in card  # no OUT/results yet
    block = card.split("## Training config")[1].split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(block) == yaml.safe_load((out / "config.yaml").read_text())


def test_resume_continues_the_loss_trajectory_exactly(zero2, resumed):
    before, after = zero2["records"], resumed["records"]
    assert [r["step"] for r in after] == [1, 2, 3, 4]
    for a, b in zip(before, after, strict=True):
        for key in ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss", "lr", "grad_norm", "task"):
            assert a[key] == b[key], (a["step"], key)


def test_training_process_loads_no_encoder_and_decodes_no_image(resumed):
    assert resumed["modules"] == []
    # the loader worker (data.num_workers=1) is another process, and it too imported and decoded nothing
    assert list(resumed["workers"]) and resumed["pid"] not in resumed["workers"]
    assert all(found == [] for found in resumed["workers"].values())


def test_zero3_trains_like_zero2(inputs, zero2, tmp_path):
    out = tmp_path / "zero3"
    train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out, "zero_stage=3", "save_every=0",
                                                                   "tensorboard=false")))
    for a, b in zip(zero2["records"], read_log(out / "log.jsonl"), strict=True):
        assert a["task"] == b["task"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    exported = load_file(out / "checkpoints/final/model.safetensors")
    reference = load_file(zero2["out"] / "checkpoints/final/model.safetensors")
    assert all(torch.allclose(exported[k], reference[k], atol=1e-4) for k in reference)


def test_loss_falls_on_a_repeated_batch(inputs, tmp_path):
    # all 8 QA samples in every step (plain shuffling, one step per epoch): the model must fit them
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, "data.tasks=[scanqa]", "data.grouping=shuffle", "micro_batch=8", "grad_accum=1",
        "max_steps=6", "optim.warmup_ratio=0.0", "optim.lr=0.01", "save_every=0", "tensorboard=false",
        "data.num_workers=0", "data.pack_turns=1"))
    result = train(config)
    lm = [r["lm_loss"] for r in read_log(tmp_path / "log.jsonl")]
    assert result.steps == 6 and len(lm) == 6
    assert lm[-1] < 0.5 * lm[0], lm


def test_language_warmup_has_the_lm_read_the_texts_before_step_one(inputs, tmp_path):
    from ross3d.train.run_folder import claim_fresh

    # one step on all 8 QA samples, fresh and after 30 warm-up steps on the run's texts: the warmed-up LM
    # already knows the answers' words (a fresh LM is near ln(vocab) = 6; the visual tokens it never saw in the
    # warm-up keep the warmed-up one well above its text-only loss)
    first = {}
    for name, warmup in (("fresh", []), ("warm", ["model.language_warmup={}", "model.language_warmup.steps=30",
                                                 "model.language_warmup.lr=0.01"])):
        config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
            inputs, tmp_path / name, "data.tasks=[scanqa]", "data.grouping=shuffle", "micro_batch=8",
            "grad_accum=1", "max_steps=1", "save_every=0", "tensorboard=false", "data.num_workers=0",
            "data.pack_turns=1", *warmup))
        train(config)
        first[name] = read_log(tmp_path / name / "log.jsonl")[0]["lm_loss"]
    records = (tmp_path / "warm" / "language_warmup.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == list(range(1, 31))
    assert not (tmp_path / "fresh" / "language_warmup.jsonl").exists()
    assert first["warm"] < first["fresh"] - 2.0, first
    claim_fresh(tmp_path / "warm", overwrite=True)  # --overwrite removes the warm-up's log with the run
    assert not (tmp_path / "warm" / "language_warmup.jsonl").exists()


def test_too_few_samples_for_the_global_batch_names_the_key(inputs, tmp_path):
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, tmp_path, "micro_batch=64"))
    with pytest.raises(ConfigError, match="micro_batch"):
        train(config)


def test_each_epoch_trains_on_its_own_packing(inputs, zero2):
    """pack_turns 2 over 3 epochs: three packings of the same rows (ScanQA turns per span = ScanQA rows), and each
    epoch's plan indexes only its own packing; epoch 3 (a run past `epochs`) takes the first again. Unpacked, one
    packing serves every epoch."""
    from transformers import AutoTokenizer

    from ross3d.chat import ChatEncoder
    from ross3d.model.config import IMAGE_TOKEN_ID
    from ross3d.prep.qa.schema import read_samples
    from ross3d.train.data import encode_epochs, epoch_plan
    from ross3d.train.labelled import training_rows
    from ross3d.train.sampler import Lanes

    cfg = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, zero2["out"], "epochs=3"))
    encoder = ChatEncoder(AutoTokenizer.from_pretrained(zero2["out"] / "tokenizer"), IMAGE_TOKEN_ID)
    rows = training_rows(cfg.data)[0]
    packed = encode_epochs(rows, cfg.data, encoder, seed=0, epochs=3)
    assert len(packed.spans) == 3 and packed.spans[0][0] == 0 and packed.spans[-1][1] == len(packed.samples)
    assert all(a[1] == b[0] for a, b in zip(packed.spans, packed.spans[1:]))
    user = encoder.tokenizer.convert_tokens_to_ids("<|im_start|>")
    scanqa = sum(r.task == "scanqa" for r in read_samples(inputs["prep"] / "samples.parquet", splits=["train"]))
    conversations = []
    for lo, hi in packed.spans:
        part = [s for s in packed.samples[lo:hi] if s.task == "scanqa"]
        # each turn opens a user and an assistant message, and the system prompt opens one
        assert sum((s.input_ids == user).sum() - 1 for s in part) == 2 * scanqa
        conversations.append(sorted(s.input_ids.tobytes() for s in part))
    assert conversations[0] != conversations[1] != conversations[2]
    for epoch in range(4):
        lo, hi = packed.span(epoch)
        plan = epoch_plan(packed, epoch, 2, 0, cfg.data, Lanes())
        assert len(plan) and plan.min() >= lo and plan.max() < hi
    assert packed.span(3) == packed.spans[0]
    single = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, zero2["out"], "data.pack_turns=1"))
    assert len(encode_epochs(rows, single.data, encoder, seed=0, epochs=3).spans) == 1


def test_collated_batch_is_the_model_format(inputs, zero2):
    from transformers import AutoTokenizer

    from ross3d.chat import IGNORE_INDEX, ChatEncoder
    from ross3d.model.config import IMAGE_TOKEN_ID
    from ross3d.train.data import MicroBatchDataset, load_text_samples

    cfg = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, zero2["out"], "data.pack_turns=1"))
    tokenizer = AutoTokenizer.from_pretrained(zero2["out"] / "tokenizer")
    samples = load_text_samples(cfg.data, ChatEncoder(tokenizer, IMAGE_TOKEN_ID))
    assert len(samples) == 20
    dataset = MicroBatchDataset(samples, cfg.data, tokenizer.pad_token_id)
    grounding = [i for i, s in enumerate(samples) if s.task == "scanrefer"]
    pick = [0, grounding[1]]
    batch = dataset[pick]
    length = max(len(samples[i].input_ids) for i in pick)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, length)
    assert ((batch["input_ids"] == IMAGE_TOKEN_ID).sum(1) == 1).all()
    assert batch["vision"].shape == (2, 8, 729, 32) and batch["voxels"].dtype == torch.int16
    assert batch["view_mean"].shape == (2, 8, 16, 27, 27) and batch["bev_mean"].shape == (2, 16, 54, 54)
    assert batch["bev_valid"].shape == (2, 27, 27) and batch["grounding"].tolist() == [False, True]
    # the grounding sample's positive is exactly its object, and NaN-box objects are padding
    assert batch["object_positive"].shape[:2] == (2, 1)  # one <ground> query per unpacked sample
    ids = batch["object_positive"][1, 0].nonzero().flatten().tolist()
    from ross3d.cache.reader import CacheReader

    scene = CacheReader(inputs["cache"]).load_scene(samples[pick[1]].scene_id, "uniform")
    assert [int(scene["objects/object_ids"][i]) for i in ids] == list(samples[pick[1]].targets[0])
    assert batch["object_valid"][1, :len(scene["objects/boxes"])].tolist() == \
        np.isfinite(scene["objects/boxes"]).all(1).tolist()
    # the QA answer is supervised, the question is not
    answer = tokenizer.encode("coffee table", add_special_tokens=False)
    labelled = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert any(labelled[i:i + len(answer)] == answer for i in range(len(labelled)))
    assert batch["labels"][0, :length][batch["attention_mask"][0] == 0].eq(IGNORE_INDEX).all()
    # every sample of the run, read through the loader: each scene is read once
    for i in range(len(samples)):
        dataset[[i]]
    assert dataset.scenes.reads == len(SCENES)


def test_packed_grounding_sample_has_one_positive_row_per_query(inputs, zero2):
    """`data.pack_turns: 2`: a ScanRefer sample of two rows holds two `<ground>` queries, and the collated
    object_positive row of each is exactly that row's object in the cached scene."""
    from transformers import AutoTokenizer

    from ross3d.cache.reader import CacheReader
    from ross3d.chat import ChatEncoder
    from ross3d.model.config import IMAGE_TOKEN_ID
    from ross3d.model.tokens import GROUND_TOKEN
    from ross3d.train.data import MicroBatchDataset, load_text_samples

    cfg = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, zero2["out"], "data.pack_turns=2"))
    tokenizer = AutoTokenizer.from_pretrained(zero2["out"] / "tokenizer")
    samples = load_text_samples(cfg.data, ChatEncoder(tokenizer, IMAGE_TOKEN_ID))
    pick = next(i for i, s in enumerate(samples) if s.task == "scanrefer" and len(s.targets) == 2)
    batch = MicroBatchDataset(samples, cfg.data, tokenizer.pad_token_id)[[pick]]
    ground = tokenizer.convert_tokens_to_ids(GROUND_TOKEN)
    assert (batch["input_ids"][0] == ground).sum() == 2 and (batch["input_ids"][0] == IMAGE_TOKEN_ID).sum() == 1
    scene = CacheReader(inputs["cache"]).load_scene(samples[pick].scene_id, "uniform")
    has_box = {int(o) for o, box in zip(scene["objects/object_ids"], scene["objects/boxes"]) if np.isfinite(box).all()}
    for t, target in enumerate(samples[pick].targets):
        ids = batch["object_positive"][0, t].nonzero().flatten().tolist()
        assert [int(scene["objects/object_ids"][i]) for i in ids] == [o for o in target if o in has_box]
    assert samples[pick].targets[0] != samples[pick].targets[1] and batch["object_positive"][0].any()


def test_rank_micro_batches_cover_each_step_once():
    from ross3d.train.data import micro_batch_order, remaining_steps
    from ross3d.train.sampler import TASK_GROUP, plan_epoch

    tasks = ["scanqa"] * 40 + ["scan2cap"] * 24 + ["scanrefer"] * 24 + ["sqa3d"] * 16
    plan = plan_epoch(tasks, list(range(len(tasks))), global_batch=8, seed=3, epoch=1)
    world, micro = 2, 2
    orders = [micro_batch_order(plan[1:], r, world, micro) for r in range(world)]
    per_step = len(plan[0]) // (world * micro)  # micro-batches per rank per step (= grad_accum)
    for s, step in enumerate(plan[1:]):
        got = np.concatenate([np.concatenate(o[s * per_step:(s + 1) * per_step]) for o in orders])
        assert sorted(got.tolist()) == sorted(step.tolist())  # ranks split the step without overlap
        assert len({TASK_GROUP[tasks[i]] for i in got}) == 1  # a single task group per step
    # a resumed run's steps continue through the epochs' plans
    plans = [plan_epoch(tasks, list(range(len(tasks))), 8, 3, e) for e in range(3)]
    steps = remaining_steps(lambda e: plans[e], start=len(plans[0]) - 2, total=2 * len(plans[0]) + 1)
    assert [e for e, _ in steps] == [0, 0] + [1] * len(plans[1]) + [2]
    assert all(np.array_equal(row, want) for (_, row), want in zip(steps, [*plans[0][-2:], *plans[1], plans[2][0]]))


def test_bad_config_values_name_the_key():
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_train_config(ROOT / "configs/tiny.yaml", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="grad_accum"):
        load_train_config(ROOT / "configs/tiny.yaml", ["grad_accum=0"])
    with pytest.raises(ConfigError, match="data.tasks"):
        load_train_config(ROOT / "configs/tiny.yaml", ["data.tasks=[scanqa, nope]"])
    with pytest.raises(ConfigError, match="zero_stage"):
        load_train_config(ROOT / "configs/tiny.yaml", ["zero_stage=1"])
    with pytest.raises(ConfigError, match="data.run_length"):
        load_train_config(ROOT / "configs/tiny.yaml", ["data.order=scene_local", "data.run_length=0"])
    with pytest.raises(ConfigError, match="data.order"):
        load_train_config(ROOT / "configs/tiny.yaml", ["data.order=by_scene"])
    seven = load_train_config(ROOT / "configs/ross3d_7b.yaml")
    assert (seven.micro_batch, seven.grad_accum, seven.zero_stage, seven.precision) == (1, 32, 3, "bf16")
    assert seven.optim.lr == 1e-5 and seven.optim.warmup_ratio == 0.03 and seven.epochs == 1


@pytest.fixture(scope="module")
def from_init(inputs, zero2, tmp_path_factory):
    """Two steps from the ZeRO-2 run's export as model.init, in one process under ZeRO-2 and under ZeRO-3."""
    init = zero2["out"] / "checkpoints" / "final"
    runs = {"init": init}
    for stage in (2, 3):
        out = tmp_path_factory.mktemp(f"init_zero{stage}")
        train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(
            inputs, out, f"zero_stage={stage}", f"model.init={init}", "max_steps=2", "save_every=0",
            "tensorboard=false")))
        runs[stage] = read_log(out / "log.jsonl")
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_under_torchrun_match_one_process(inputs, zero2, from_init, tmp_path, stage):
    # 2 ranks x micro-batch 2 = the single process's 2 x 2 accumulation: same samples per step, so the losses
    # without random draws (LM and grounding; no view masking in steps 1-3) agree. The ZeRO-3 case starts from
    # model.init, as the 7B recipe does
    out = tmp_path / "ddp"
    extra = ["zero_stage=3", f"model.init={from_init['init']}", "max_steps=2"] if stage == 3 else []
    reference = from_init[2] if stage == 3 else zero2["records"][:3]
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "-m", "ross3d_cli.app", "train",
           str(ROOT / "configs/tiny.yaml")]
    for item in _overrides(inputs, out, "grad_accum=1", "save_every=0", "tensorboard=false", *extra):
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_log(out / "log.jsonl")[:len(reference)]
    assert len(records) == len(reference)
    for a, b in zip(reference, records):
        assert a["task"] == b["task"]
        assert b["lm_loss"] == pytest.approx(a["lm_loss"], rel=1e-4, abs=1e-5)
        assert b["ground_loss"] == pytest.approx(a["ground_loss"], rel=1e-4, abs=1e-5)


def test_model_init_trains_the_same_under_zero3_and_zero2(from_init):
    """A run from model.init (the 7B recipe's path) under ZeRO-3 follows ZeRO-2's losses and gradients."""
    for a, b in zip(from_init[2], from_init[3], strict=True):
        assert a["task"] == b["task"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)


def test_scene_local_loader_reads_a_scene_once_per_run(inputs, tmp_path, monkeypatch):
    """Real DataLoader workers over the real cache, the reader wrapped to log each scene block it reads: under
    scene_local every run of the plan is one read in one worker; the random order reads about once per sample."""
    from ross3d.cache import reader as reader_module
    from ross3d.batches import TextSample
    from ross3d.train.data import MicroBatchDataset, micro_batch_order, micro_batches
    from ross3d.train.sampler import Lanes, SceneOrder, plan_epoch
    from test_sampler import SCENE_IDS, SCENE_TASKS, _scene_switches

    log = tmp_path / "reads.txt"

    class LoggingReader(reader_module.CacheReader):
        def load_scene(self, scene_id, strategy, bf16_bits=False, check=False):
            with log.open("a") as f:  # appended from each forked worker
                f.write(scene_id + "\n")
            # 24 scene ids over the two cached scenes: every read is a real scene block
            return super().load_scene(SCENES[int(scene_id[1:]) % 2], strategy, bf16_bits, check)

    monkeypatch.setattr(reader_module, "CacheReader", LoggingReader)
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, tmp_path, "data.num_workers=2",
                                                                      "data.scene_cache=1"))
    text = np.arange(4, dtype=np.int64)
    samples = [TextSample(t, s, text, text, (), ()) for t, s in zip(SCENE_TASKS, SCENE_IDS)]
    world, micro = 2, 1  # 2 ranks x 2 workers x 2 micro-batches: each worker reads 2 samples of a step
    lanes = Lanes(world, micro, config.data.num_workers)
    for scene_order in (SceneOrder(SCENE_IDS, run_length=2, buffer=3, lanes=lanes), None):
        log.write_text("")
        plan = plan_epoch(SCENE_TASKS, np.zeros(48), 8, seed=5, epoch=2, scene_order=scene_order)
        for rank in range(world):  # each rank's loader, as its process would run it
            dataset = MicroBatchDataset(samples, config.data, pad_id=0)
            assert sum(1 for _ in micro_batches(dataset, micro_batch_order(plan, rank, world, micro), config.data,
                                                on_gpu=False)) == 8 // world * len(plan) // micro
        reads = len(log.read_text().split())
        assert reads == _scene_switches(plan, SCENE_IDS, world, micro, 2)  # workers take micro-batches in turn
        assert reads == 24 if scene_order else reads > 36  # 24 runs: each (task group, scene) is one run of 2


def test_scene_local_resume_continues_the_loss_trajectory_exactly(inputs, tmp_path):
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, "data.order=scene_local", "data.run_length=2", "data.scene_buffer=2", "tensorboard=false"))
    train(config)
    before = read_log(tmp_path / "log.jsonl")
    (tmp_path / "checkpoints" / "latest_step").write_text("step_2")
    _spoil_records_after(tmp_path / "log.jsonl", 2)
    train(config, resume=True)
    after = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4]
    for a, b in zip(before, after, strict=True):
        for key in ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss", "grad_norm", "task"):
            assert a[key] == b[key], (a["step"], key)
    assert all(r["task"] in ("scanqa", "scan2cap", "scanrefer") for r in after)  # one task group per step


# ---- issue 16: what the trainer trusts (run folders, resume, cache checks)

def _copy_run(zero2, tmp_path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(zero2["out"], out)
    (out / "checkpoints" / "latest_step").write_text("step_4")
    return out


def test_existing_run_folder_is_refused_without_overwrite(inputs, zero2, tmp_path):
    from ross3d.errors import InputError
    from ross3d.train.run_folder import claim_fresh

    out = _copy_run(zero2, tmp_path)
    before = (out / "log.jsonl").read_text()
    with pytest.raises(InputError, match="holds a previous run .*--overwrite"):
        train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out)))
    assert (out / "log.jsonl").read_text() == before and (out / "checkpoints/step_4").is_dir()
    (out / "notes.txt").write_text("mine")
    claim_fresh(out, overwrite=True)  # removes the run's outputs, and only those
    assert sorted(p.name for p in out.iterdir()) == [".ross3d.lock", "notes.txt"]


def test_resume_with_a_changed_config_names_the_keys(inputs, zero2, tmp_path):
    out = _copy_run(zero2, tmp_path)
    changed = _overrides(inputs, out, "micro_batch=1", "optim.lr=0.002", "seed=5", "data.num_workers=0")
    with pytest.raises(ConfigError, match=r"micro_batch \(2 -> 1\), optim.lr \(0.001 -> 0.002\), seed \(0 -> 5\)"):
        train(load_train_config(ROOT / "configs/tiny.yaml", changed), resume=True)
    with pytest.raises(ConfigError, match=r"in micro_batch \(2 -> 1\), seed \(0 -> 5\);"):  # optim allowed
        train(load_train_config(ROOT / "configs/tiny.yaml", changed), resume=True, allow_changes=("optim",))
    with pytest.raises(ConfigError, match="--allow-change optim.lrr: not a config key"):
        train(load_train_config(ROOT / "configs/tiny.yaml", changed), resume=True, allow_changes=("optim.lrr",))


def test_resume_refuses_a_crafted_pickle(inputs, zero2, tmp_path):
    import pickle

    from ross3d.errors import InputError

    out = _copy_run(zero2, tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (out / "checkpoints/step_4/mp_rank_00_model_states.pt").write_bytes(pickle.dumps({"module": Payload()}))
    with pytest.raises(InputError, match="step_4: refused to load"):
        train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out)), resume=True)
    assert not marker.exists()
    assert json.loads((out / "checkpoints/step_4/trainer_rank0.json").read_text())["step"] == 4  # state is JSON


def test_a_second_run_on_a_locked_folder_names_the_holder(inputs, tmp_path):
    from ross3d.errors import InputError

    out = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom ross3d.locking import exclusive_lock\n"
        f"with exclusive_lock(Path({str(out)!r}), 'training run'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"in use by another run \\(training run, pid {holder.pid}, "
                                             "lock .ross3d.lock\\)"):
            train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(inputs, out)))
    finally:
        holder.communicate("", timeout=30)
    assert not (out / "log.jsonl").exists()


def test_non_finite_loss_stops_keeping_the_last_good_checkpoint(inputs, tmp_path):
    from ross3d.errors import TrainingError

    # step 1 updates with lr 1e30 (no warmup): its loss is finite, the next one is not
    config = load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path, "optim.lr=1e30", "optim.warmup_ratio=0", "save_every=1", "grad_accum=1",
        "data.num_workers=0", "tensorboard=false"))
    with pytest.raises(TrainingError, match=r"step 2: non-finite loss .*checkpoints/step_1 is the last good"):
        train(config)
    assert (tmp_path / "checkpoints/latest_step").read_text() == "step_1"
    assert (tmp_path / "checkpoints/step_1/trainer_rank0.json").exists()
    assert not (tmp_path / "checkpoints/step_2").exists()


def test_infinite_lr_is_refused_by_the_cli(inputs, tmp_path):
    from typer.testing import CliRunner

    from ross3d_cli.app import app

    args = ["train", str(ROOT / "configs/tiny.yaml")]
    for item in _overrides(inputs, tmp_path, "optim.lr=.inf"):
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "optim.lr: must be a finite number" in result.output
    assert "Traceback" not in result.output


def test_wandb_resume_continues_the_run_id(tmp_path):
    from ross3d.train.metrics import WANDB_RUN, wandb_resume

    assert wandb_resume(tmp_path, resuming=True) == {}
    (tmp_path / WANDB_RUN).write_text('{"id": "abc123"}')
    assert wandb_resume(tmp_path, resuming=False) == {}
    assert wandb_resume(tmp_path, resuming=True) == {"id": "abc123", "resume": "must"}


def _cache_copy(inputs, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "cache"
    shutil.copytree(inputs["cache"], copy)
    return copy


def _train_on(inputs, tmp_path, cache: Path, *extra: str):
    return train(load_train_config(ROOT / "configs/tiny.yaml", _overrides(
        inputs, tmp_path / "run", f"data.cache_dir={cache}", "save_every=0", "tensorboard=false", *extra)))


def test_a_flipped_byte_stops_training_in_the_loader_worker(inputs, tmp_path):
    from ross3d.errors import InputError

    cache = _cache_copy(inputs, tmp_path)
    chunk = next(p for p in (cache / "cache.zarr" / SCENES[0] / "uniform/frames/vae_mean/c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"cache.zarr/{SCENES[0]}: uniform/frames/vae_mean: checksum mismatch") as err:
        _train_on(inputs, tmp_path, cache, "data.num_workers=1")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run/checkpoints").exists()


def test_nan_values_with_matching_checksums_stop_training(inputs, tmp_path):
    import zarr
    from typer.testing import CliRunner

    from ross3d.cache.checksum import array_checksum
    from ross3d.errors import InputError
    from ross3d_cli.app import app

    cache = _cache_copy(inputs, tmp_path)
    scene = cache / "cache.zarr" / SCENES[1]
    arr = zarr.open_group(scene, mode="r+")["bev/vae_mean"]
    value = arr[...]
    value[0, 3, 4] = np.nan
    arr[...] = value
    record = json.loads((scene / "scene.json").read_text())  # the checksums agree with the NaN bytes
    record["arrays"]["bev/vae_mean"]["xxh3"] = array_checksum(value)
    (scene / "scene.json").write_text(json.dumps(record))
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["scenes"][SCENES[1]]["checksums"]["bev/vae_mean"] = f"xxh3:{array_checksum(value)}"
    (cache / "manifest.json").write_text(json.dumps(manifest))
    verified = CliRunner().invoke(app, ["verify", str(cache)])
    assert verified.exit_code == 1 and "bev/vae_mean: 1 non-finite values" in verified.output
    with pytest.raises(InputError, match=f"{SCENES[1]}: bev/vae_mean: 1 non-finite values"):
        _train_on(inputs, tmp_path, cache, "data.num_workers=0")


def test_a_truncated_chunk_names_its_file(inputs, tmp_path):
    from ross3d.errors import InputError

    cache = _cache_copy(inputs, tmp_path)
    chunk = cache / "cache.zarr" / SCENES[0] / "uniform/frames/vision/c/0/0/0"
    chunk.write_bytes(chunk.read_bytes()[:chunk.stat().st_size // 2])
    with pytest.raises(InputError,
                       match=f"{SCENES[0]}/uniform/frames/vision/c/0/0/0: cannot read uniform/frames/vision"):
        _train_on(inputs, tmp_path, cache, "data.num_workers=0")


def test_before_step_one_provenance_and_missing_scenes_are_refused(inputs, tmp_path):
    import pyarrow.parquet as pq

    from ross3d.errors import InputError

    cache = _cache_copy(inputs, tmp_path)
    index = pq.read_table(cache / "index.parquet")
    pq.write_table(index.filter(pc_equal(index, "scene_id", SCENES[0])), cache / "index.parquet")
    with pytest.raises(InputError, match=f"1 scenes of the 'train' samples are not cached .*: {SCENES[1]}$"):
        _train_on(inputs, tmp_path, cache, "data.num_workers=0")
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["fingerprints"]["prep"] = "0" * 16
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="cache was built from another PREP_DIR"):
        _train_on(inputs, tmp_path, cache, "data.num_workers=0")
    assert not (tmp_path / "run/log.jsonl").exists()


def pc_equal(table, column: str, value: str):
    import pyarrow.compute as pc

    return pc.equal(table[column], value)


def test_deepspeed_config_merges_a_user_file_and_refuses_conflicts(tmp_path):
    from ross3d.train.engine import computed_deepspeed_config, deepspeed_config, merge_deepspeed_config

    cfg = load_train_config(ROOT / "configs/ross3d_7b.yaml")
    computed = computed_deepspeed_config(cfg, world_size=8)
    user = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 32, "bf16": {"enabled": "auto"},
            "fp16": {"enabled": False}, "gradient_clipping": "auto",
            "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                                  "reduce_bucket_size": "auto", "stage3_max_live_parameters": 2e8}}
    merged, changes = merge_deepspeed_config(computed, user, "ds.json")
    zero = merged["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True} and zero["stage"] == 3
    assert zero["stage3_max_live_parameters"] == 2e8 and "reduce_bucket_size" not in zero
    assert merged["train_batch_size"] == 256 and merged["bf16"] == {"enabled": cfg.precision == "bf16"}
    assert merged["zero_force_ds_cpu_optimizer"] is False  # offload with the loop's torch AdamW
    assert any(c.startswith("zero_optimization.offload_optimizer.device: absent -> cpu") for c in changes)
    assert any(c.startswith("zero_optimization.reduce_bucket_size: auto") for c in changes)
    assert not any(c.startswith(("train_", "gradient_", "bf16")) for c in changes)  # agreeing or auto: unchanged
    bad = {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2}, "optimizer": {"type": "Adam"}}
    with pytest.raises(ConfigError) as err:
        merge_deepspeed_config(computed, bad, "ds.json")
    assert "train_micro_batch_size_per_gpu = 4" in str(err.value) and "(set micro_batch)" in str(err.value)
    assert "zero_optimization.stage = 2" in str(err.value) and "optimizer: the loop provides" in str(err.value)
    with pytest.raises(ConfigError, match="fp16.enabled"):
        merge_deepspeed_config(computed, {"fp16": {"enabled": True}}, "ds.json")
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"overlap_comm": True}}))
    cfg.deepspeed_config = str(tmp_path / "ds.json")
    assert deepspeed_config(cfg, 8)[0]["zero_optimization"]["overlap_comm"] is True
    assert computed_deepspeed_config(load_train_config(ROOT / "configs/ross3d_7b.yaml"), 8) == computed
    cfg.deepspeed_config = str(tmp_path / "missing.json")
    with pytest.raises(InputError, match="missing.json"):
        deepspeed_config(cfg, 8)


def test_sizes_that_are_no_weight_shape_follow_the_cache():
    from ross3d.model.config import preset
    from ross3d.cache.model_sizes import fit_to_cache

    sizes = {"n_frames": 4, "patch_grid": 27, "vision_dim": 1152, "bev_latent_grid": 54, "latent_channels": 16,
             "latent_shift": 0.0, "latent_scale": 0.5}
    fitted = fit_to_cache(preset("7b"), sizes, "model.init: x")
    assert (fitted.n_frames, fitted.latent_shift, fitted.latent_scale) == (4, 0.0, 0.5)
    with pytest.raises(ConfigError, match=r"model.init: x does not fit the cache .*vision_dim"):
        fit_to_cache(preset("7b"), {**sizes, "vision_dim": 32}, "model.init: x")


def test_max_coverage_training_and_checkpoint_pruning(inputs, tmp_path):
    """A cache holding only the max-coverage selection trains (a silent fall-back to the uniform frames would find
    nothing), and checkpoints every step with keep_checkpoints=2 leave exactly the two newest."""
    from ross3d.cache import tiny
    from ross3d.cache.run import CacheOptions, cache_latents

    cache = tmp_path / "cache-max-coverage"
    report = cache_latents(inputs["prep"], cache, inputs["vae"], tiny.save_tiny_siglip(tmp_path / "siglip", seed=0,
                                                                                        hidden_size=32, num_layers=1),
                           CacheOptions(strategies=("max-coverage",), device="cpu", batch_size=8, workers=1))
    assert not report.failed
    out = tmp_path / "run"
    overrides = _overrides(inputs, out, "data.strategy=max-coverage", "save_every=1", "keep_checkpoints=2",
                           "tensorboard=false")
    overrides[1] = f"data.cache_dir={cache}"
    train(load_train_config(ROOT / "configs/tiny.yaml", overrides))
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_3", "step_4"]
    assert (out / "checkpoints" / "final" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "latest_step").read_text().strip() == "step_4"


def test_denoiser_lr_and_ground_lr_give_those_parts_their_own_groups():
    from ross3d.train.config import OptimConfig
    from ross3d.train.optimizer import param_groups

    model = torch.nn.Module()
    model.llm, model.denoiser = torch.nn.Linear(3, 2), torch.nn.Linear(4, 5)  # (6 + 2) and (20 + 5) numbers
    model.ground_head = torch.nn.Linear(2, 3)  # 6 + 3 numbers

    def summary(optim):  # {(lr, weight decay): number of parameters}
        return {(g["lr"], g["weight_decay"]): sum(p.numel() for p in g["params"]) for g in param_groups(list(model.named_parameters()), optim)}

    assert summary(OptimConfig(lr=1e-3, weight_decay=0.1)) == {(1e-3, 0.1): 6 + 20 + 6, (1e-3, 0.0): 2 + 5 + 3}
    assert summary(OptimConfig(lr=1e-3, weight_decay=0.1, denoiser_lr=4e-3)) == {
        (1e-3, 0.1): 6 + 6, (1e-3, 0.0): 2 + 3, (4e-3, 0.1): 20, (4e-3, 0.0): 5}
    assert summary(OptimConfig(lr=1e-3, weight_decay=0.1, denoiser_lr=4e-3, ground_lr=3e-4)) == {
        (1e-3, 0.1): 6, (1e-3, 0.0): 2, (4e-3, 0.1): 20, (4e-3, 0.0): 5, (3e-4, 0.1): 6, (3e-4, 0.0): 3}
    for key in ("denoiser_lr", "ground_lr"):
        with pytest.raises(ConfigError, match=f"optim.{key}"):
            load_train_config(ROOT / "configs/tiny.yaml", [f"optim.{key}=0"])
