"""A real end-to-end training input for the trainer tests: two scans through `prep scannet`, tiny random encoders
through `cache-latents`, and samples.parquet written with the prep-qa schema module (QA, captioning and grounding
rows over the scenes' real objects). Built once per test session."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from prep_scannet_scene import write_scene
from ross3d.cache import tiny
from ross3d.cache.run import CacheOptions, cache_latents
from ross3d.prep.options import PrepOptions
from ross3d.prep.qa.schema import Sample, make_sample_id, write_samples
from ross3d.prep.run import prep_scannet

SCENES = ["scene0000_00", "scene0001_00"]
# 8 frames per scene (the tiny model's V); the BEV at the contract's 432 px so its latent is 54x54 (27x27 grouped)
PREP_OPTIONS = PrepOptions(frame_stride=2, num_frames=8, bev_size=432)

QUESTIONS = [("what is in the middle of the room", "coffee table"), ("what is under the table", "floor"),
             ("what color is the table", "brown"), ("how many tables are there", "one")]


def _samples(prep: Path) -> list[Sample]:
    objects = pq.read_table(prep / "objects.parquet").to_pylist()
    rows: list[Sample] = []
    for scene_id in SCENES:
        mine = [o for o in objects if o["scene_id"] == scene_id]
        for k, (question, answer) in enumerate(QUESTIONS):
            rows.append(Sample(make_sample_id("scanqa", "train", f"{scene_id}-{k}"), "train", "scanqa", scene_id,
                               [("human", f"<image> {question}? Answer the question simply."), ("gpt", answer)],
                               [answer]))
        for obj in mine:
            desc = f"this is the {obj['label']} in the room"
            rows.append(Sample(make_sample_id("scan2cap", "train", f"{scene_id}-{obj['object_id']}"), "train",
                               "scan2cap", scene_id,
                               [("human", "<image> Given an object located at <coord> , describe the object in "
                                          "detail."), ("gpt", desc)], [desc], [obj["object_id"]], list(obj["box"])))
            rows.append(Sample(make_sample_id("scanrefer", "train", f"{scene_id}-{obj['object_id']}"), "train",
                               "scanrefer", scene_id,
                               [("human", f"<image>Identify the object according to the following description.\n"
                                          f"{desc}"), ("gpt", "<ground>")], ["<ground>"], [obj["object_id"]]))
    return rows


def build_train_inputs(root: Path, num_frames: int = 8, siglip_width: int = 32,
                       bev_size: int = PREP_OPTIONS.bev_size) -> dict[str, Path]:
    """PREP_DIR with samples.parquet and a complete CACHE_DIR with vision features (`siglip_width` wide)."""
    for i, scene_id in enumerate(SCENES):
        write_scene(root / "scans", scene_id, n_frames=max(20, 2 * num_frames + 6), seed=i)
    prep = root / "prep"
    options = PrepOptions(frame_stride=PREP_OPTIONS.frame_stride, num_frames=num_frames, bev_size=bev_size)
    assert prep_scannet(root / "scans", prep, options).ok == SCENES
    vae = tiny.save_tiny_vae(root / "vae", seed=0)
    siglip = tiny.save_tiny_siglip(root / "siglip", seed=0, hidden_size=siglip_width, num_layers=1)
    report = cache_latents(prep, root / "cache", vae, siglip,
                           CacheOptions(strategies=("uniform",), device="cpu", batch_size=8, workers=1))
    assert report.ok == SCENES, report.failed
    write_samples(prep / "samples.parquet", _samples(prep))
    return {"prep": prep, "cache": root / "cache", "vae": vae}
