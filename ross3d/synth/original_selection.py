"""The original's max-coverage frame selection (docs/original-data.md B.7), written out plainly for the test-data
generator so that `scannet_select_frames.json` does not come from ross3d's prep code (ross3d.prep.geometry,
ross3d.prep.selection), which the compatibility tests compare against it.

- Voxels: `round(xyz / 0.1)` of float32 coordinates, round half to even, no offset or clamp.
- A frame's voxels: every depth pixel unprojected (z = d / depth_shift, x = (u - cx) z / fx, y = (v - cy) z / fy,
  then the aligned camera-to-world pose; zero depth is not removed and lands on the camera centre), the unique
  voxels kept if they are mesh voxels.
- Greedy: at most 32 picks; each pick takes the candidate with the most voxels not yet covered (ties: a seeded
  `random.Random(seed).choice`, the original's being unseeded); a zero gain does not stop it.
"""

from __future__ import annotations

import random

import numpy as np

VOXEL_SIZE = 0.1
MAX_PICKS = 32


def voxel_keys(points: np.ndarray) -> np.ndarray:
    """Sorted unique voxels of (N, 3) points, each packed into one int64 (21 bits per axis, offset 2^20)."""
    q = np.round(np.asarray(points, np.float32) / np.float32(VOXEL_SIZE)).astype(np.int64) + (1 << 20)
    return np.unique((q[:, 0] << 42) | (q[:, 1] << 21) | q[:, 2])


def depth_points(depth: np.ndarray, intrinsic: np.ndarray, cam_to_world: np.ndarray, depth_shift: float
                 ) -> np.ndarray:
    """(H * W, 3) float64 world points of every pixel of a depth image (zero depth included)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    z = depth.astype(np.float64) / depth_shift
    x = (u - intrinsic[0, 2]) * z / intrinsic[0, 0]
    y = (v - intrinsic[1, 2]) * z / intrinsic[1, 1]
    camera = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    return camera @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


def greedy_max_coverage(frame_voxels: list[np.ndarray], max_picks: int, seed: int) -> tuple[list[int], list[int]]:
    """Candidate positions in pick order and the new voxels each added."""
    rng = random.Random(seed)
    covered = np.zeros(0, np.int64)
    left = list(range(len(frame_voxels)))
    picks, gains = [], []
    for _ in range(min(max_picks, len(frame_voxels))):
        new = {k: len(np.setdiff1d(frame_voxels[k], covered, assume_unique=True)) for k in left}
        best = max(new.values())
        pick = rng.choice([k for k in left if new[k] == best])
        picks.append(pick)
        gains.append(best)
        left.remove(pick)
        covered = np.union1d(covered, frame_voxels[pick])
    return picks, gains


def selection_record(scene_id: str, frame_voxels: dict[int, np.ndarray], seed: int) -> dict:
    """The B.7 record of one scene from its valid exported frames' mesh voxels (frame index -> keys): candidates
    every other frame, all of them when fewer than 32 remain."""
    frames = sorted(frame_voxels)
    candidates = frames[::2] if len(frames[::2]) >= MAX_PICKS else frames
    positions, gains = greedy_max_coverage([frame_voxels[f] for f in candidates], MAX_PICKS, seed)
    picked = [candidates[p] for p in positions]
    union = lambda fs: len(np.unique(np.concatenate([frame_voxels[f] for f in fs]))) if fs else 0  # noqa: E731
    return {"video_id": f"scannet/{scene_id}",
            "frame_files": [f"data/scannet/posed_images/{scene_id}/{f:05d}.jpg" for f in picked],
            "voxel_nums": gains, "num_all_voxels": union(candidates), "num_select_voxels": union(picked)}
