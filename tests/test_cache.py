"""`ross3d cache-latents` and `ross3d verify` end to end on CPU over a real PREP_DIR: the CACHE_DIR contract, latents
and features equal to direct per-image encoder calls, copies equal to PREP, refusal on a changed VAE, rebuild,
corruption caught by verify, re-caching a scene prep redid, and resume after a SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import zarr
from typer.testing import CliRunner

from cache_helpers import SCENES, build_inputs, reference_vae_view, reference_view
from ross3d.cache.reader import CacheReader
from ross3d.prep.store import PAUSE_ENV
from ross3d_cli.app import app

runner = CliRunner()
STRATEGIES = ("uniform", "max-coverage")


def _cache(inputs, cache_dir, *extra):
    args = ["cache-latents", str(inputs["prep"]), str(cache_dir), "--vae", str(inputs["vae"]),
            "--vision-tower", str(inputs["siglip"]), "--device", "cpu", "--batch-size", "5", *extra]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    inputs = build_inputs(root)
    result = _cache(inputs, root / "cache")
    assert result.exit_code == 0, result.output
    return inputs, root / "cache"


def _selected(prep: Path, scene_id: str, strategy: str) -> np.ndarray:
    rows = [r for r in pq.read_table(prep / "selections.parquet").to_pylist()
            if r["scene_id"] == scene_id and r["strategy"] == strategy]
    return np.asarray([r["frame_idx"] for r in sorted(rows, key=lambda r: r["rank"])], np.int32)


def test_contract_layout_and_copies(built):
    inputs, cache = built
    prep = inputs["prep"]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] and set(manifest["scenes"]) == set(SCENES)
    assert all(s["status"] == "ok" for s in manifest["scenes"].values())
    index = pq.read_table(cache / "index.parquet").to_pylist()
    assert sorted((r["scene_id"], r["strategy"]) for r in index) == sorted((s, t) for s in SCENES for t in STRATEGIES)
    objects = pq.read_table(prep / "objects.parquet").to_pylist()
    for scene_id in SCENES:
        group = zarr.open_group(cache / "cache.zarr" / scene_id, mode="r")
        prep_arrays = zarr.open_group(prep / "scenes" / scene_id / "arrays.zarr", mode="r")
        mine = [o for o in objects if o["scene_id"] == scene_id]
        np.testing.assert_array_equal(group["objects/object_ids"][...], [o["object_id"] for o in mine])
        np.testing.assert_array_equal(group["objects/boxes"][...], np.asarray([o["box"] for o in mine], np.float32))
        assert group["bev/vae_mean"].shape == (16, 8, 8) and group["bev/valid27"].shape == (4, 4)
        assert group["bev/vae_mean"].attrs["scaling_factor"] == pytest.approx(0.3611)
        assert group["bev/vae_mean"].attrs["shift_factor"] == pytest.approx(0.1159)
        for strategy in STRATEGIES:
            frames = _selected(prep, scene_id, strategy)
            np.testing.assert_array_equal(group[f"{strategy}/frames/frame_idx"][...], frames)
            if strategy == "max-coverage":  # the selected frames reach the cache in frame order (the default)
                assert (np.diff(frames) > 0).all(), frames
            assert group[f"{strategy}/frames/vae_mean"].shape == (len(frames), 16, 27, 27)
            assert group[f"{strategy}/frames/vae_logvar"].dtype == np.float32
            assert group[f"{strategy}/frames/vision"].shape == (len(frames), 729, 32)
            np.testing.assert_array_equal(group[f"{strategy}/tokens/voxels"][...], prep_arrays[f"voxels/{strategy}"][...])
            np.testing.assert_array_equal(group[f"{strategy}/objects/membership"][...],
                                          prep_arrays[f"membership/{strategy}"][...])
            row = next(r for r in index if r["scene_id"] == scene_id and r["strategy"] == strategy)
            assert row["n_frames"] == len(frames) and row["n_objects"] == len(mine)
            assert f"{strategy}/frames/vae_mean" in row["arrays"] and "bev/vae_mean" in row["arrays"]
            assert not any(a.startswith(next(t for t in STRATEGIES if t != strategy)) for a in row["arrays"])


def _frames(prep: Path, scene_id: str) -> dict[int, bytes]:
    table = pq.read_table(prep / "scenes" / scene_id / "frames.parquet", columns=["frame_idx", "color_jpeg"])
    return dict(zip(table.column("frame_idx").to_pylist(), table.column("color_jpeg").to_pylist()))


def test_latents_and_features_equal_direct_calls(built):
    from diffusers import AutoencoderKL
    from transformers import SiglipVisionModel

    inputs, cache = built
    vae = AutoencoderKL.from_pretrained(inputs["vae"]).eval()
    siglip = SiglipVisionModel.from_pretrained(inputs["siglip"]).eval()
    scenes = {r["scene_id"]: r for r in pq.read_table(inputs["prep"] / "scenes.parquet").to_pylist()}
    reader = CacheReader(cache)
    scene_id = SCENES[1]
    jpegs, size = _frames(inputs["prep"], scene_id), (scenes[scene_id]["depth_width"], scenes[scene_id]["depth_height"])
    cached = reader.load_scene(scene_id, "max-coverage")
    with torch.no_grad():
        for v, frame in enumerate(cached["frames/frame_idx"][:3]):
            view = reference_view(jpegs[int(frame)], *size)
            dist = vae.encode(reference_vae_view(view)).latent_dist
            np.testing.assert_allclose(cached["frames/vae_mean"][v], dist.mean[0].numpy(), rtol=1e-4, atol=5e-5)
            np.testing.assert_allclose(cached["frames/vae_logvar"][v], dist.logvar[0].numpy(), rtol=1e-4, atol=5e-5)
            hidden = siglip(pixel_values=view[None], output_hidden_states=True).hidden_states
            ref = hidden[-2][0].to(torch.bfloat16).float().numpy()  # all layers but the last, no post layernorm
            close = np.isclose(cached["frames/vision"][v], ref, rtol=2 ** -7, atol=1e-6)
            assert close.all() and (cached["frames/vision"][v] == ref).mean() > 0.99
        bev_rgb = zarr.open_group(inputs["prep"] / "scenes" / scene_id / "arrays.zarr", mode="r")["bev/rgb"][...]
        bev = torch.from_numpy(bev_rgb).permute(2, 0, 1)[None].float() / 255.0
        dist = vae.encode(((bev - 0.5) / 0.5).clamp(-1, 1)).latent_dist
        np.testing.assert_allclose(cached["bev/vae_mean"], dist.mean[0].numpy(), rtol=1e-4, atol=5e-5)
        np.testing.assert_allclose(cached["bev/vae_logvar"], dist.logvar[0].numpy(), rtol=1e-4, atol=5e-5)
    # the 64 px BEV's mask lies on the 4x4 cells of its 8x8 latent: a bilinear resize (align_corners False) to 4
    # samples at 16 i + 7.5, the mean of pixels 16 i + 7 and 16 i + 8 (each way); a cell is valid if any is not black
    mask = np.array([[bev_rgb[16 * i + 7:16 * i + 9, 16 * j + 7:16 * j + 9].any() for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(cached["bev/valid27"], mask)
    assert 0 < mask.sum() < 16


def test_changed_vae_is_refused_then_rebuilt(built, tmp_path):
    inputs, cache = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    args = ["cache-latents", str(inputs["prep"]), str(copy), "--vae", str(inputs["vae_other"]),
            "--vision-tower", str(inputs["siglip"]), "--device", "cpu"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "other settings" in refused.output and "vae.weights_sha256" in refused.output
    before = zarr.open_group(copy / "cache.zarr" / SCENES[0], mode="r")["uniform/frames/vae_mean"][...]
    np.testing.assert_array_equal(before, zarr.open_group(cache / "cache.zarr" / SCENES[0], mode="r")[
        "uniform/frames/vae_mean"][...])
    rebuilt = runner.invoke(app, args + ["--rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    after = CacheReader(copy).load_scene(SCENES[0], "uniform")["frames/vae_mean"]
    assert np.abs(after - before).max() > 1e-3
    assert runner.invoke(app, ["verify", str(copy)]).exit_code == 0


def test_scene_redone_in_prep_is_cached_again(built, tmp_path):
    """prep re-ran a scene whose raw files changed (a new inputs_fingerprint in PREP's manifest): resume re-encodes
    that scene only."""
    inputs, cache = built
    prep, copy = tmp_path / "prep", tmp_path / "cache"
    shutil.copytree(inputs["prep"], prep)
    shutil.copytree(cache, copy)
    manifest = json.loads((prep / "manifest.json").read_text())
    old = manifest["scenes"][SCENES[0]]["inputs_fingerprint"]
    assert len(old) == 16 and json.loads((copy / "cache.zarr" / SCENES[0] / "scene.json").read_text())[
        "prep_inputs"] == old
    manifest["scenes"][SCENES[0]]["inputs_fingerprint"] = "0123456789abcdef"
    (prep / "manifest.json").write_text(json.dumps(manifest))
    result = _cache({**inputs, "prep": prep}, copy)
    assert result.exit_code == 0, result.output
    assert f"1 scenes cached, {len(SCENES) - 1} skipped" in result.output
    record = json.loads((copy / "cache.zarr" / SCENES[0] / "scene.json").read_text())
    assert record["prep_inputs"] == "0123456789abcdef"


def test_verify_catches_corrupted_chunk(built, tmp_path):
    inputs, cache = built
    ok = runner.invoke(app, ["verify", str(cache)])
    assert ok.exit_code == 0 and "2 scenes" in ok.output and "0 problems" in ok.output
    assert "verifying" in ok.output and "2/2" in ok.output  # the progress bar, at its end
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    shard = next(p for p in (copy / "cache.zarr" / SCENES[0] / "uniform/frames/vae_mean/c").rglob("*") if p.is_file())
    data = bytearray(shard.read_bytes())
    data[100:104] = bytes(4 - i for i in range(4))
    shard.write_bytes(bytes(data))
    bad = runner.invoke(app, ["verify", str(copy)])
    assert bad.exit_code == 1
    assert f"{SCENES[0]}: uniform/frames/vae_mean: checksum mismatch" in bad.output


def _digest(name: str, value: np.ndarray) -> str:
    """An older record's checksum of an array, computed here with the libraries directly (docs/data-format.md)."""
    import hashlib

    import google_crc32c

    data = f"{value.dtype.str}{value.shape}".encode() + np.ascontiguousarray(value).tobytes()
    return hashlib.sha256(data).hexdigest() if name == "sha256" else f"{google_crc32c.value(data):08x}"


def _as_old_records(cache: Path, name: str) -> None:
    """Rewrite a cache as older versions wrote it: `name` (sha256, or crc32c) per array in scene.json and the
    manifest (as `crc32c:<hex>`, or the bare sha256), CRC32C records keeping the writer's finiteness attestation as
    `finite_crc32c` (sha256 records had none), the index checksums over those lines (docs/data-format.md, computed
    here from that text)."""
    import hashlib

    import pyarrow as pa

    manifest = json.loads((cache / "manifest.json").read_text())
    for scene_id in SCENES:
        record_path = cache / "cache.zarr" / scene_id / "scene.json"
        record = json.loads(record_path.read_text())
        group = zarr.open_group(cache / "cache.zarr" / scene_id, mode="r")
        for key, entry in record["arrays"].items():
            del entry["xxh3"]
            entry[name] = _digest(name, group[key][...])
            if entry.pop("finite_xxh3", None) and name == "crc32c":
                entry["finite_crc32c"] = entry["crc32c"]
            text = entry[name] if name == "sha256" else f"crc32c:{entry[name]}"
            manifest["scenes"][scene_id]["checksums"][key] = text
        record_path.write_text(json.dumps(record))
    (cache / "manifest.json").write_text(json.dumps(manifest))
    rows = pq.read_table(cache / "index.parquet").to_pylist()
    for row in rows:
        arrays = manifest["scenes"][row["scene_id"]]["checksums"]
        lines = "\n".join(f"{k}={arrays[k]}" for k in row["arrays"])
        row["checksum"] = hashlib.sha256(lines.encode()).hexdigest()
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(cache / "index.parquet")), cache / "index.parquet")


@pytest.mark.parametrize("name", ["crc32c", "sha256"])
def test_caches_with_older_records_still_verify_and_read(built, tmp_path, name):
    """Records of caches written before XXH3 hold crc32c (with `finite_crc32c`), older ones sha256: verify and the
    trainer's checked read accept them and still catch a changed byte."""
    from ross3d.errors import InputError

    _, cache = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    _as_old_records(copy, name)
    record = (copy / "cache.zarr" / SCENES[0] / "scene.json").read_text()
    assert "xxh3" not in record and (name == "crc32c") == ("finite_crc32c" in record)
    ok = runner.invoke(app, ["verify", str(copy)])
    assert ok.exit_code == 0 and "0 problems" in ok.output, ok.output
    CacheReader(copy).load_scene(SCENES[0], "uniform", check=True)
    chunk = next(p for p in (copy / "cache.zarr" / SCENES[0] / "bev/vae_mean/c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[8] ^= 0x01
    chunk.write_bytes(bytes(data))
    bad = runner.invoke(app, ["verify", str(copy)])
    assert bad.exit_code == 1 and f"{SCENES[0]}: bev/vae_mean: checksum mismatch" in bad.output
    with pytest.raises(InputError, match="bev/vae_mean: checksum mismatch"):
        CacheReader(copy).load_scene(SCENES[0], "uniform", check=True)


@pytest.mark.parametrize("name, attestation", [("xxh3", "stale"), ("xxh3", "absent"), ("crc32c", "stale")])
def test_a_nan_in_the_bf16_features_with_a_matching_checksum_is_caught_on_the_checked_read(built, tmp_path, name,
                                                                                           attestation):
    """The checked read skips finiteness only for the bytes the writer attested (`finite_xxh3`, `finite_crc32c` in
    records written before XXH3): features rewritten with a negative NaN and their checksum updated are counted,
    whether the record keeps the writer's attestation (now naming other bytes) or has none (records written
    before it)."""
    from ross3d.cache.checksum import array_checksum
    from ross3d.errors import InputError

    _, cache = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    if name == "crc32c":
        _as_old_records(copy, name)
    scene = copy / "cache.zarr" / SCENES[0]
    arr = zarr.open_group(scene, mode="r+")["uniform/frames/vision"]
    value = arr[...]
    value[1, 2, 3] = 0xFFC0  # bf16 bits of a negative quiet NaN
    arr[...] = value
    record = json.loads((scene / "scene.json").read_text())
    entry = record["arrays"]["uniform/frames/vision"]
    assert entry[f"finite_{name}"] == entry[name]  # the writer attested the features it wrote
    entry[name] = array_checksum(value, name)
    if attestation == "absent":
        del entry[f"finite_{name}"]
    (scene / "scene.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="uniform/frames/vision: 1 non-finite values"):
        CacheReader(copy).load_scene(SCENES[0], "uniform", check=True)
    CacheReader(copy).load_scene(SCENES[1], "uniform", check=True)  # the other scene is untouched


def test_resume_after_sigkill(built, tmp_path):
    inputs, cache = built
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "ross3d_cli.app", "cache-latents", str(inputs["prep"]), str(out), "--vae",
           str(inputs["vae"]), "--vision-tower", str(inputs["siglip"]), "--device", "cpu", "--batch-size", "1",
           "--strategy", "uniform"]
    marker = tmp_path / "paused"  # the run stops right after committing its first scene (PAUSE_ENV), killed there
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, PAUSE_ENV: f"1:{marker}"})
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    committed = {s: (out / "cache.zarr" / s / "scene.json").stat().st_mtime_ns
                 for s in SCENES if (out / "cache.zarr" / s / "scene.json").exists()}
    assert list(committed) == [SCENES[0]] and marker.read_text() == str(out / "cache.zarr" / SCENES[0])
    manifest = json.loads((out / "manifest.json").read_text())  # killed mid-run: nothing claims to be complete
    assert not manifest["complete"] and not (out / "index.parquet").exists()
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 1
    rerun = runner.invoke(app, cmd[3:])
    assert rerun.exit_code == 0, rerun.output
    assert f"{len(committed)} skipped" in rerun.output
    for scene_id, mtime in committed.items():
        assert (out / "cache.zarr" / scene_id / "scene.json").stat().st_mtime_ns == mtime
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    ref = CacheReader(cache).load_scene(SCENES[1], "uniform")
    got = CacheReader(out).load_scene(SCENES[1], "uniform")
    np.testing.assert_allclose(got["frames/vae_mean"], ref["frames/vae_mean"], rtol=1e-4, atol=5e-5)


def test_torchrun_two_ranks_share_scenes(built, tmp_path):
    inputs, cache = built
    out = tmp_path / "cache"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ross3d_cli.app", "cache-latents",
           str(inputs["prep"]), str(out), "--vae", str(inputs["vae"]), "--device", "cpu", "--strategy", "uniform"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 scenes cached" in done.stderr  # each rank encoded its own scene
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert sorted(r["scene_id"] for r in index) == SCENES
    assert not list(out.glob(".failed-rank*"))
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    for scene_id in SCENES:
        got = CacheReader(out).load_scene(scene_id, "uniform")["frames/vae_mean"]
        ref = CacheReader(cache).load_scene(scene_id, "uniform")["frames/vae_mean"]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=5e-5)


def test_a_cache_of_64_px_bev_renders_sizes_the_model_and_an_old_27x27_mask_is_refused(built, tmp_path):
    """This module's cache has 64 px BEVs: an 8x8 latent and a 4x4 mask, which size the model's BEV grid. A cache
    written before the mask followed the BEV size (a 27x27 mask beside the 8x8 latent) is refused before step 1."""
    from ross3d.errors import InputError
    from ross3d.cache.model_sizes import cache_sizes

    _, cache = built
    assert cache_sizes(cache, "uniform")["bev_latent_grid"] == 8
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    group = zarr.open_group(copy / "cache.zarr" / SCENES[0] / "bev", mode="r+")
    group.create_array("valid27", shape=(27, 27), dtype=bool, overwrite=True)[...] = np.ones((27, 27), bool)
    with pytest.raises(InputError, match=r"BEV latent 8x8 does not group to the 27x27 BEV mask .*cache-latents "
                                         r"--rebuild"):
        cache_sizes(copy, "uniform")
    bad = " ".join(runner.invoke(app, ["verify", str(copy)]).output.split())  # rich wraps long lines
    assert "bev/valid27: shape (27, 27) breaks the contract (V=8, objects=" in bad and "BEV mask 4x4)" in bad
