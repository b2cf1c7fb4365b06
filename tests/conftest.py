"""Shared fixtures: one small synthetic ScanNet dataset per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """2 synthetic scenes of 60 frames (colour 160x120, depth 80x60): scans/, benchmarks/, scannet_metadata/."""
    from ross3d.synth.scenes import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, n_scenes=2, n_frames=60, seed=0, color_size=(160, 120), depth_size=(80, 60))
    return root
