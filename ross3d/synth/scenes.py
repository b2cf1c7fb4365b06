"""Synthetic scans in the real ScanNet raw layout (`OUT/scans/<scene_id>/`): mesh in a non-aligned frame with its
`axisAlignment`, aggregation + segments, and a rendered `.sens`; plus the benchmark annotation files.

The whole dataset is a deterministic function of the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ross3d.progress import NullProgress, Progress
from ross3d.scannet.ply import write_scannet_ply
from ross3d.scannet.scene import scan_paths, transform_points
from ross3d.synth.capture import intrinsics, write_sens
from ross3d.synth.room import SynthRoom, build_room


@dataclass
class SynthScene:
    scene_id: str
    room: SynthRoom
    axis_align: np.ndarray


def random_axis_alignment(rng: np.random.Generator) -> np.ndarray:
    """A rotation about z and a translation: maps the stored (raw) mesh onto the axis-aligned room."""
    theta = rng.uniform(0, 2 * np.pi)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    m[:2, 3] = rng.uniform(-3, 3, 2)
    m[2, 3] = rng.uniform(-0.1, 0.1)
    return m


def _meta_text(scene: SynthScene, n_frames: int, color_size, depth_size) -> bytes:
    kc, kd = intrinsics(*color_size), intrinsics(*depth_size)
    lines = [
        "axisAlignment = " + " ".join(f"{v:.9g}" for v in scene.axis_align.reshape(-1)),
        f"colorHeight = {color_size[1]}", f"colorToDepthExtrinsics = {' '.join(['1', '0', '0', '0'] * 4)}",
        f"colorWidth = {color_size[0]}", f"depthHeight = {depth_size[1]}", f"depthWidth = {depth_size[0]}",
        f"fx_color = {kc[0, 0]:.6f}", f"fx_depth = {kd[0, 0]:.6f}", f"fy_color = {kc[1, 1]:.6f}",
        f"fy_depth = {kd[1, 1]:.6f}", f"mx_color = {kc[0, 2]:.6f}", f"mx_depth = {kd[0, 2]:.6f}",
        f"my_color = {kc[1, 2]:.6f}", f"my_depth = {kd[1, 2]:.6f}", f"numColorFrames = {n_frames}",
        f"numDepthFrames = {n_frames}", "numIMUmeasurements = 0", "sceneType = Bedroom / Hotel",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def write_scan(scans_dir: Path, scene: SynthScene, n_frames: int, color_size: tuple[int, int],
               depth_size: tuple[int, int], rng: np.random.Generator, progress: Progress = NullProgress()) -> None:
    paths = scan_paths(scans_dir, scene.scene_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    room = scene.room
    raw_vertices = transform_points(np.linalg.inv(scene.axis_align), room.vertices)
    write_scannet_ply(paths.mesh, raw_vertices, room.colors, room.faces)
    paths.meta.write_bytes(_meta_text(scene, n_frames, color_size, depth_size))
    paths.segs.write_text(json.dumps({
        "params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750", "maxPoints": "5000",
                   "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1"},
        "sceneId": scene.scene_id, "segIndices": room.segment_of_vertex.tolist()}))
    paths.aggregation.write_text(json.dumps({
        "sceneId": f"scannet.{scene.scene_id}", "appId": "Aggregator.v2",
        "segGroups": [{"id": o.object_id, "objectId": o.object_id, "segments": o.segments, "label": o.label}
                      for o in room.objects],
        "segmentsFile": f"scannet.{scene.scene_id}_vh_clean_2.0.010000.segs.json"}, indent=1))
    invalid = {n_frames // 4, n_frames // 4 + 1, (2 * n_frames) // 3}
    write_sens(paths.sens, room, scene.axis_align, n_frames, color_size, depth_size, invalid, rng, progress)


def make_scenes(n_scenes: int, seed: int) -> list[SynthScene]:
    scenes = []
    for k in range(n_scenes):
        rng = np.random.default_rng([seed, k])
        scenes.append(SynthScene(f"scene{k:04d}_00", build_room(rng), random_axis_alignment(rng)))
    return scenes


MARKER = "synth.json"


def generate_synthetic_dataset(out_dir: str | Path, n_scenes: int = 3, n_frames: int = 340, seed: int = 0,
                               color_size: tuple[int, int] = (320, 240), depth_size: tuple[int, int] = (160, 120),
                               progress: Progress = NullProgress()) -> list[str] | None:
    """Write scans, benchmark annotations, split lists and the label map under `out_dir`; returns scene ids.

    `out_dir/synth.json` (the parameters) is written last; when it already holds the same parameters nothing is
    regenerated and None is returned.
    """
    from ross3d.synth.annotations import write_annotations

    out_dir = Path(out_dir)
    params = {"n_scenes": n_scenes, "n_frames": n_frames, "seed": seed, "color_size": list(color_size),
              "depth_size": list(depth_size)}
    marker = out_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return None
    marker.unlink(missing_ok=True)
    scenes = make_scenes(n_scenes, seed)
    progress.start("frames", n_scenes * n_frames, "rendering frames", unit="frames")
    for k, scene in enumerate(scenes):
        write_scan(out_dir / "scans", scene, n_frames, color_size, depth_size,
                   np.random.default_rng([seed, k, 1]), progress)
    progress.finish("frames")
    write_annotations(out_dir, scenes, seed)
    marker.write_text(json.dumps(params))
    return [s.scene_id for s in scenes]
