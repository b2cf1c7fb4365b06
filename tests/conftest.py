"""Shared fixtures: one small synthetic ScanNet dataset per test session, and the eval inputs built from it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """2 synthetic scenes of 60 frames (colour 160x120, depth 80x60): scans/, benchmarks/, scannet_metadata/."""
    from ross3d.synth.scenes import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, n_scenes=2, n_frames=60, seed=0, color_size=(160, 120), depth_size=(80, 60))
    return root


@pytest.fixture(scope="session")
def eval_inputs(synth_root, tmp_path_factory):
    """PREP_DIR, CACHE_DIR and a tiny random-weight checkpoint for `ross3d eval run` (tests/eval_fixtures.py)."""
    from eval_fixtures import build_eval_inputs

    return build_eval_inputs(synth_root, tmp_path_factory.mktemp("eval_inputs"))
