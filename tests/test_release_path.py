"""The user's path from the released files to benchmark numbers: the README section "From the released checkpoints"
run command by command on miniatures of LLaVA-Video-7B-Qwen2, llava-video-qwen2-7b-ross3d, the FLUX `vae/` folder
and the 2D Ross `mm_inv_projector.bin` in their release formats (tests/release_fixtures.py) and on synthetic scans.

The block is read from README.md and run as written, in a scratch directory that holds its relative paths, with
only these changes: `cuda` -> `cpu`, 8 GPUs -> 1 process, the repository's config file by absolute path, and a
few size options appended per command (the miniature tower's config, 4 frames, few samples and steps).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from release_fixtures import (Sizes, tower_state, write_flux_vae, write_llava_video, write_ross2d_projector,
                              write_ross3d_release, write_slow_tokenizer)
from ross3d_cli.app import app
from torch_threads import one_torch_thread

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## From the released checkpoints"
BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")
# the original's scripts/3d/zero3.json with the optimizer offloaded, as a user would pass it (deepspeed_config)
ZERO3_OFFLOAD = {
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                          "offload_param": {"device": "none", "pin_memory": True}, "overlap_comm": True,
                          "contiguous_gradients": True, "sub_group_size": 1e9, "reduce_bucket_size": "auto",
                          "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                          "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9,
                          "stage3_gather_16bit_weights_on_model_save": True},
    "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 100,
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "wall_clock_breakdown": False}


def readme_commands() -> list[list[str]]:
    """The section's bash block: one argv per command (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _extra(argv: list[str], work: Path) -> list[str]:
    """Test-size options for one README command (never a change of what the command does)."""
    if argv[:2] == ["ross3d", "convert-checkpoint"]:
        return ["--vision-config", str(work / "tower_config.json")]
    if argv[:3] == ["ross3d", "prep", "scannet"]:
        return ["--num-frames", "4", "--frame-stride", "5"]
    if argv[:2] == ["ross3d", "cache-latents"]:
        return ["--strategy", "uniform", "--batch-size", "8", "--workers", "1"]
    if argv[:3] == ["ross3d", "eval", "run"]:
        return ["--limit", "2", "--batch-size", "2"]
    if argv[:2] == ["ross3d", "visualize"]:
        return ["--steps", "5"]
    if argv[0] == "deepspeed":
        sets = ["max_steps=2", "micro_batch=4", "grad_accum=1", "data.grouping=shuffle",
                "data.tasks=[scan2cap, scanrefer]", "data.num_workers=0", "precision=fp32", "save_every=0",
                "tensorboard=false", f"deepspeed_config={work / 'zero3_offload.json'}"]
        return [arg for item in sets for arg in ("--set", item)]
    return []


def _run(argv: list[str], work: Path) -> str:
    argv = ["cpu" if a == "cuda" else str(ROOT / a) if a.startswith("configs/") else a for a in argv]
    argv += _extra(argv, work)
    if argv[0] == "deepspeed":  # the launcher itself, one process: it appends --local_rank=0
        argv[argv.index("--num_gpus") + 1] = "1"
        launcher = Path(sys.executable).parent / "deepspeed"
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
        proc = subprocess.run([str(launcher), *argv[1:]], capture_output=True, text=True, cwd=work, timeout=600,
                              env={**env, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return " ".join((proc.stdout + proc.stderr).split())
    assert argv[0] == "ross3d", argv
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, (argv, result.output[-3000:])
    return " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def release(synth_root, tmp_path_factory):
    """The downloads in release format, the synthetic data where the README expects it, then every command."""
    work = tmp_path_factory.mktemp("release")
    sizes = Sizes()
    dl = work / "downloads"
    tokens = write_llava_video(dl / "LLaVA-Video-7B-Qwen2", sizes)
    write_ross3d_release(dl / "llava-video-qwen2-7b-ross3d", sizes)
    write_flux_vae(dl / "FLUX.1-dev" / "vae")
    write_ross2d_projector(dl / "ross3d-utils" / "mm_inv_projector.bin", sizes)
    (work / "tower_config.json").write_text(json.dumps(sizes.tower_config()))
    (work / "zero3_offload.json").write_text(json.dumps(ZERO3_OFFLOAD))
    (work / "data" / "scannet").mkdir(parents=True)
    (work / "data" / "scannet" / "scans").symlink_to(synth_root / "scans")
    (work / "data" / "scannet" / "scannetv2-labels.combined.tsv").symlink_to(
        synth_root / "scannet_metadata" / "scannetv2-labels.combined.tsv")
    (work / "data" / "benchmarks").symlink_to(synth_root / "benchmarks")
    cwd = Path.cwd()
    os.chdir(work)  # the README's paths are relative
    try:  # tiny tensors: one thread decodes the 512-token answers several times faster
        with one_torch_thread():
            outputs = []
            for argv in readme_commands():
                start = time.perf_counter()
                outputs.append((argv, _run(argv, work)))
                print(f"{time.perf_counter() - start:6.1f} s  {shlex.join(argv[:3])}")
    finally:
        os.chdir(cwd)
    return {"work": work, "sizes": sizes, "tokens": tokens, "outputs": outputs}


def test_the_readme_block_is_the_path_the_issue_names():
    names = [" ".join(a[:3]) if a[0] == "ross3d" else a[0] for a in readme_commands()]
    assert names == ["ross3d convert-checkpoint downloads/LLaVA-Video-7B-Qwen2",
                     "ross3d convert-checkpoint downloads/llava-video-qwen2-7b-ross3d",
                     "ross3d prep scannet", "ross3d prep qa", "ross3d cache-latents data/prep",
                     "ross3d eval run", "deepspeed", "ross3d eval run",
                     "ross3d visualize runs/ross3d_7b/checkpoints/final"]
    train = next(a for a in readme_commands() if a[0] == "deepspeed")
    assert train[1:5] == ["--num_gpus", "8", "--module", "ross3d_cli.app"]


def _source(folder: Path) -> dict[str, torch.Tensor]:
    state = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        state |= load_file(shard)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state)
    return state


def test_llava_video_converts_with_tokens_tower_and_2d_denoiser(release):
    from ross3d.model.checkpoint import load_model
    from ross3d.model.tokenizer import load_tokenizer

    work, tokens = release["work"], release["tokens"]
    src, dst = work / "downloads" / "LLaVA-Video-7B-Qwen2", work / "models" / "llava-video-7b"
    assert not (src / "tokenizer.json").exists()  # the release ships the slow files only
    model, report = load_model(dst)
    n = tokens["len"]
    # <ground>/<coord> take the first padded rows, mean-initialised over the tokens that existed (input and output)
    assert (model.config.ground_token_id, model.config.coord_token_id) == (n, n + 1)
    tokenizer = load_tokenizer(dst)
    assert (dst / "tokenizer.json").is_file()
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<ground>", "<coord>")] == [n, n + 1]
    assert tokenizer.encode("at <coord> ,", add_special_tokens=False).count(n + 1) == 1
    source = _source(src)
    for ours, theirs in (("llm.model.embed_tokens.weight", "model.embed_tokens.weight"),
                         ("llm.lm_head.weight", "lm_head.weight")):
        mean = source[theirs][:n].float().mean(0).to(torch.bfloat16)
        assert torch.equal(model.state_dict()[ours][n], mean) and torch.equal(model.state_dict()[ours][n + 1], mean)
        assert torch.equal(model.state_dict()[ours][:n], source[theirs][:n])
    # the denoiser took the 2D file's sizes and weights; only the poolers' queries, k, v, out start fresh
    ross2d = torch.load(work / "downloads" / "ross3d-utils" / "mm_inv_projector.bin", weights_only=True)
    assert model.config.denoiser_dim == release["sizes"].denoiser_dim
    assert torch.equal(model.denoiser.blocks[1].attn.qkv.weight.to(torch.bfloat16),
                       ross2d["model.mm_inv_projector.net.blocks.1.attn.qkv.weight"])
    assert sorted(k for k in report.fresh) == []  # everything the convert wrote is loaded back
    output = dict((" ".join(a[:3]), out) for a, out in release["outputs"])
    printed = output["ross3d convert-checkpoint downloads/LLaVA-Video-7B-Qwen2"]
    assert "(added, mean-initialised)" in printed and "vision_tower" in printed
    assert "z_embedder_view.cls_token" in printed  # the 2D init reports what it left fresh


def test_ross3d_release_converts_exactly(release):
    from ross3d.model.checkpoint import load_model

    work = release["work"]
    src, dst = work / "downloads" / "llava-video-qwen2-7b-ross3d", work / "models" / "ross3d-7b"
    model, _ = load_model(dst)
    source = _source(src)
    tokens = release["tokens"]
    assert (model.config.ground_token_id, model.config.coord_token_id) == (tokens["len"], tokens["len"] + 1)
    ours = model.state_dict()
    pairs = {"denoiser.z_embedder_bev.cls_token": "model.mm_inv_projector.net.z_embedder_bev.cls_token",
             "ground_head.obj.3.weight": "ground_head_obj.3.weight", "mask_token": "model.mask_token",
             "ground_head.zero_target": "ground_head_zero_target",
             "llm.model.embed_tokens.weight": "model.embed_tokens.weight"}
    for key, theirs in pairs.items():
        assert torch.equal(ours[key], source[theirs]), key
    printed = next(out for a, out in release["outputs"] if "downloads/llava-video-qwen2-7b-ross3d" in a)
    assert "0 freshly initialised" in printed and "0 unexpected" in printed and "mm_pixel_decoder" in printed


def test_vision_tower_is_the_stored_tower(release):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from ross3d.cache.encoders import VisionEncoder
    from ross3d.cache.reader import CacheReader
    from ross3d.model.vision_tower import LAYERS_USED_KEY

    work, sizes = release["work"], release["sizes"]
    folder = work / "models" / "llava-video-7b" / "vision_tower"
    source = _source(work / "downloads" / "LLaVA-Video-7B-Qwen2")
    stored = {k[len("model.vision_tower.vision_tower."):]: v for k, v in source.items()
              if k.startswith("model.vision_tower.vision_tower.")}
    written = load_file(folder / "model.safetensors")
    assert written.keys() == stored.keys() and all(torch.equal(written[k], stored[k]) for k in stored)
    assert all(v.dtype == torch.bfloat16 for v in written.values())
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == sizes.tower_layers - 1 and config[LAYERS_USED_KEY] == sizes.tower_layers - 1
    # the original: a full-size tower whose last layer is deleted, loaded with the stored weights, output of the
    # last stored layer without post-layernorm
    pixels = torch.rand(2, 3, 384, 384, generator=torch.Generator().manual_seed(0)) * 2 - 1
    original_cfg = SiglipVisionConfig(**{**sizes.tower_config(), "num_hidden_layers": sizes.tower_layers - 1})
    original = SiglipVisionModel(original_cfg).eval()
    missing, unexpected = original.load_state_dict({k.removeprefix("vision_model."): v.float()
                                                    for k, v in stored.items()}, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing)
    with torch.no_grad():
        reference = original(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    ours = VisionEncoder(folder, torch.device("cpu")).encode(pixels)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    # a plain SigLIP folder of the same weights (all layers of the full tower, the last one random): same features
    plain = work / "plain_siglip"
    full = tower_state(sizes, torch.Generator().manual_seed(5), layers=sizes.tower_layers) | stored
    SiglipVisionConfig(**{**sizes.tower_config(), "vision_use_head": False}).save_pretrained(plain)
    save_file({k: v.float().contiguous() for k, v in full.items()}, str(plain / "model.safetensors"),
              metadata={"format": "pt"})
    assert torch.equal(VisionEncoder(work / "plain_siglip", torch.device("cpu")).encode(pixels), ours)
    # and the cache holds those features: the tower's fingerprint, 4 frames x 729 x width
    reader = CacheReader(work / "data" / "cache")
    vision = reader.manifest["fingerprints"]["vision"]
    assert vision["layers_used"] == sizes.tower_layers - 1 and vision["config"][LAYERS_USED_KEY] == 2
    assert reader.load_scene("scene0000_00", "uniform")["frames/vision"].shape == (4, 729, sizes.tower_width)


def test_tower_shapes_are_checked_with_a_clear_error(release, tmp_path):
    src = release["work"] / "downloads" / "LLaVA-Video-7B-Qwen2"
    result = CliRunner().invoke(app, ["convert-checkpoint", str(src), str(tmp_path / "a")])  # so400m by default
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "siglip-so400m-patch14-384" in output and "--vision-config" in output
    wide = {**release["sizes"].tower_config(), "hidden_size": 48}
    (tmp_path / "wide.json").write_text(json.dumps(wide))
    result = CliRunner().invoke(app, ["convert-checkpoint", str(src), str(tmp_path / "b"), "--vision-config",
                                      str(tmp_path / "wide.json")])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert re.search(r"vision tower tensor vision_model\.\S+: shape \(32,.*\) in the checkpoint, \S+wide\.json "
                     r"expects \(48,", output), output


def test_the_2d_init_refuses_a_trained_denoiser(release, tmp_path):
    downloads = release["work"] / "downloads"
    result = CliRunner().invoke(app, ["convert-checkpoint", str(downloads / "llava-video-qwen2-7b-ross3d"),
                                      str(tmp_path / "out"), "--mm-inv-projector",
                                      str(downloads / "ross3d-utils" / "mm_inv_projector.bin")])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "holds a trained denoiser" in output and not (tmp_path / "out").exists()


def test_training_from_llava_video_with_grounding_and_scan2cap(release):
    from ross3d.model.checkpoint import load_model
    from ross3d.train.metrics import read_log

    work = release["work"]
    printed = next(out for a, out in release["outputs"] if a[0] == "deepspeed")
    assert "--local_rank=0" in printed  # the launcher's argument reached the CLI, which accepted it
    assert "zero_force_ds_cpu_optimizer" in printed and "offload_optimizer.device: absent -> cpu" in printed
    records = read_log(work / "runs" / "ross3d_7b" / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    tasks = {t for r in records for t in r["task"].split("+")}
    assert tasks == {"scan2cap", "scanrefer"}
    assert all(r["ground_loss"] > 0 and r["lm_loss"] > 0 for r in records)
    model, _ = load_model(work / "runs" / "ross3d_7b" / "checkpoints" / "final")
    n = release["tokens"]["len"]
    assert (model.config.ground_token_id, model.config.coord_token_id) == (n, n + 1)
    assert model.config.n_frames == 4  # the cache's frame count, not the 7b preset's 32


def test_eval_of_both_models_on_all_five_benchmarks(release):
    import inspect

    from ross3d.eval.runner import EvalOptions
    from ross3d_cli.eval_run import eval_run

    work = release["work"]
    for run in ("ross3d-7b", "ross3d-ours"):
        for bench in BENCHMARKS:
            lines = [json.loads(x) for x in (work / "results" / run / bench / "answers.jsonl").read_text().splitlines()]
            assert len(lines) == 2, (run, bench)
            assert (work / "results" / run / bench / "METRICS.json").is_file()
    # answers are no longer cut at 32 tokens: the untrained miniature never says <|im_end|>, and its captions are
    # longer than 32 of its longest tokens could spell
    assert EvalOptions().max_new_tokens == 512
    assert inspect.signature(eval_run).parameters["max_new_tokens"].default.default == 512
    vocab = json.loads((work / "downloads" / "llava-video-qwen2-7b-ross3d" / "vocab.json").read_text())
    longest = max(len(token) for token in vocab)  # byte-level BPE: one character per byte
    captions = [json.loads(x)["pred_response"] for x in
                (work / "results" / "ross3d-7b" / "scan2cap" / "answers.jsonl").read_text().splitlines()]
    assert max(len(c) for c in captions) > 32 * longest


def test_visualize_wrote_the_picture(release):
    assert (release["work"] / "results" / "reconstruction.png").stat().st_size > 1000


def test_every_stage_reads_a_slow_tokenizer_and_adds_missing_tokens(release, tmp_path):
    """A model folder whose tokenizer is the release's slow files without <ground>/<coord> (ids -1 in its config):
    training adds them (mean rows), eval and visualize load it."""
    import shutil

    from ross3d.eval.runner import EvalOptions, Evaluator
    from ross3d.model.checkpoint import read_config
    from ross3d.train.config import TrainConfig
    from ross3d.train.model_setup import build_model
    from ross3d.visualize.run import visualize_checkpoint

    work = release["work"]
    folder = tmp_path / "slow"
    folder.mkdir()
    shutil.copy2(work / "models" / "llava-video-7b" / "model.safetensors", folder / "model.safetensors")
    config = json.loads((work / "models" / "llava-video-7b" / "config.json").read_text())
    config |= {"ground_token_id": -1, "coord_token_id": -1}
    (folder / "config.json").write_text(json.dumps(config))
    ids = write_slow_tokenizer(folder)
    assert read_config(folder).ground_token_id == -1
    train = TrainConfig()
    train.data.prep_dir, train.data.cache_dir = str(work / "data" / "prep"), str(work / "data" / "cache")
    train.model.init = str(folder)
    model, tokenizer = build_model(train, tmp_path / "tok")
    n = ids["len"]
    assert (model.config.ground_token_id, model.config.coord_token_id) == (n, n + 1)
    assert tokenizer.convert_tokens_to_ids("<ground>") == n
    evaluator = Evaluator(folder, work / "data" / "cache", work / "data" / "prep", EvalOptions(limit=1))
    assert evaluator.tokenizer.convert_tokens_to_ids("<|im_end|>") == ids["<|im_end|>"]
    report = visualize_checkpoint(folder, work / "data" / "cache", work / "data" / "prep" / "samples.parquet",
                                  "scene0000_00", steps=1)
    assert report["reconstructions"]


def test_launcher_arguments_are_accepted():
    # deepspeed --module appends --local_rank=N before the command; torch.distributed.launch spells it --local-rank
    for flag in (["--local_rank=3"], ["--local-rank", "3"]):
        result = CliRunner().invoke(app, [*flag, "verify", "/nonexistent/cache"])
        assert result.exit_code == 1 and "No such option" not in result.output, result.output
