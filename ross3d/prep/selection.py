"""Frame selection among the valid kept frames: `uniform` (the original's linspace rule) and `max-coverage`
(greedy maximum coverage of the scene-mesh voxels each frame's depth sees, seeded deterministic tie-break).

Max-coverage is vectorised: frames x voxels is a sparse 0/1 matrix; after each pick the gains of all frames
drop by the number of newly covered voxels they contain (one column slice of the CSC matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


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


def coverage_matrix(voxel_sets: list[np.ndarray], n_voxels: int) -> sp.csc_matrix:
    """(n_frames, n_voxels) 0/1 CSC matrix from per-frame sorted unique voxel ids in [0, n_voxels)."""
    indptr = np.zeros(len(voxel_sets) + 1, np.int64)
    indptr[1:] = np.cumsum([len(v) for v in voxel_sets])
    indices = np.concatenate(voxel_sets) if voxel_sets else np.zeros(0, np.int64)
    data = np.ones(len(indices), np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(voxel_sets), n_voxels)).tocsc()


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
    matrix = coverage_matrix(voxel_sets, n_voxels)
    gains = np.asarray(matrix.sum(axis=1)).ravel().astype(np.int64)
    # key = gain * n + (n - 1 - priority): argmax gives max gain, then min priority
    tie = (n - 1 - tie_priority(n, seed)).astype(np.int64)
    available = np.ones(n, bool)
    covered = np.zeros(n_voxels, bool)
    picks, picked_gains = [], []
    for _ in range(min(num_frames, n)):
        key = np.where(available, gains * n + tie, -1)
        f = int(np.argmax(key))
        picks.append(f)
        picked_gains.append(int(gains[f]))
        available[f] = False
        v = voxel_sets[f]
        new = v[~covered[v]]
        covered[new] = True
        if len(new):
            gains -= np.asarray(matrix[:, new].sum(axis=1)).ravel().astype(np.int64)
    picks_arr, gains_arr = np.asarray(picks, np.int64), np.asarray(picked_gains, np.int64)
    if num_frames > n:
        extra = num_frames - n
        picks_arr = np.concatenate([picks_arr, np.resize(picks_arr, extra)])
        gains_arr = np.concatenate([gains_arr, np.zeros(extra, np.int64)])
    return Selection(picks_arr, gains_arr)


def uniform(voxel_sets: list[np.ndarray], n_voxels: int, num_frames: int) -> Selection:
    """The uniform picks and the new voxels each adds in rank order (for the coverage curve)."""
    picks = uniform_picks(len(voxel_sets), num_frames)
    return Selection(picks, gains_in_order(voxel_sets, picks, n_voxels))
