"""Frame selection among the valid kept frames: `uniform` (the original's linspace rule) and `max-coverage`
(greedy maximum coverage of the scene-mesh voxels each frame's depth sees, seeded deterministic tie-break), whose
picks reach the model sorted by frame number as the original's loader sorts them (`in_frame_order`) or in greedy
order.

Max-coverage is vectorised: each frame's voxels are a bitset (uint64 words); a greedy step is one AND with the
uncovered set and a popcount over all frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Selection:
    """Selected candidate positions (into the candidate list) in rank order and the new voxels each adds."""

    picks: np.ndarray  # (K,) int64
    gains: np.ndarray  # (K,) int64


def uniform_picks(n: int, num_frames: int) -> np.ndarray:
    """`np.linspace(0, n-1, num_frames, dtype=int)`: repeats positions when n < num_frames, as the original."""
    return np.linspace(0, n - 1, num_frames, dtype=int).astype(np.int64)


def tie_priority(n: int, seed: int) -> np.ndarray:
    """A seeded permutation: among frames of equal gain the one with the lowest priority value wins."""
    return np.random.default_rng(seed).permutation(n)


def coverage_bitsets(voxel_sets: list[np.ndarray], n_voxels: int) -> np.ndarray:
    """(n_frames, ceil(n_voxels / 64)) uint64 bitsets of per-frame voxel ids in [0, n_voxels)."""
    n_words = max(1, -(-n_voxels // 64))
    bits = np.zeros((len(voxel_sets), n_words * 64), bool)
    for row, ids in zip(bits, voxel_sets):
        row[ids] = True
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)


def gains_in_order(voxel_sets: list[np.ndarray], order: np.ndarray, n_voxels: int) -> np.ndarray:
    """New voxels each frame of `order` adds to the union of those before it (a repeated frame adds 0)."""
    covered = np.zeros(n_voxels, bool)
    gains = np.zeros(len(order), np.int64)
    for rank, f in enumerate(order):
        v = voxel_sets[f]
        gains[rank] = np.count_nonzero(~covered[v])
        covered[v] = True
    return gains


def max_coverage(voxel_sets: list[np.ndarray], n_voxels: int, num_frames: int, seed: int) -> Selection:
    """Greedy set cover: pick the frame with the most uncovered voxels (ties: lowest seeded priority), until
    num_frames picks; a gain of 0 does not stop it. With fewer candidates than num_frames every candidate is
    picked once in greedy order and the order then repeats from the first pick with gain 0."""
    n = len(voxel_sets)
    if n == 0:
        return Selection(np.zeros(0, np.int64), np.zeros(0, np.int64))
    bits = coverage_bitsets(voxel_sets, n_voxels)
    uncovered = np.full(bits.shape[1], np.iinfo(np.uint64).max, np.uint64)
    # key = gain * n + (n - 1 - priority): argmax gives max gain, then min priority
    tie = (n - 1 - tie_priority(n, seed)).astype(np.int64)
    available = np.ones(n, bool)
    picks, picked_gains = [], []
    for _ in range(min(num_frames, n)):
        gains = np.bitwise_count(bits & uncovered).sum(axis=1, dtype=np.int64)
        f = int(np.argmax(np.where(available, gains * n + tie, -1)))
        picks.append(f)
        picked_gains.append(int(gains[f]))
        available[f] = False
        uncovered &= ~bits[f]
    return pad_by_repeating(np.asarray(picks, np.int64), np.asarray(picked_gains, np.int64), num_frames)


def pad_by_repeating(picks: np.ndarray, gains: np.ndarray, num_frames: int) -> Selection:
    """Fewer picks than num_frames: the picks repeat from the first, the repeats with gain 0."""
    extra = num_frames - len(picks)
    if extra <= 0 or len(picks) == 0:
        return Selection(picks, gains)
    return Selection(np.concatenate([picks, np.resize(picks, extra)]),
                     np.concatenate([gains, np.zeros(extra, np.int64)]))


def in_frame_order(sel: Selection, voxel_sets: list[np.ndarray], n_voxels: int, num_frames: int) -> Selection:
    """The distinct picks sorted by candidate position (= frame number), with the new voxels each adds in that
    order, padded like the greedy selection."""
    picks = np.unique(sel.picks)
    return pad_by_repeating(picks, gains_in_order(voxel_sets, picks, n_voxels), num_frames)


def uniform(voxel_sets: list[np.ndarray], n_voxels: int, num_frames: int) -> Selection:
    """The uniform picks and the new voxels each adds in rank order (for the coverage curve)."""
    picks = uniform_picks(len(voxel_sets), num_frames)
    return Selection(picks, gains_in_order(voxel_sets, picks, n_voxels))
