"""The process pool and the Ray executor run the same per-scene job: their PREP_DIR equals a single-process run."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from prep_scannet_scene import write_scene
from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet

OPTIONS = PrepOptions(frame_stride=3, num_frames=6, bev_size=48)
SCENES = ["scene0000_00", "scene0001_00"]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("exec")
    for i, s in enumerate(SCENES):
        write_scene(root / "scans", s, n_frames=24, seed=i)
    report = prep_scannet(root / "scans", root / "single", OPTIONS)
    assert sorted(report.ok) == SCENES
    return root


def assert_same_prep(a, b):
    for table in ("scenes", "selections", "objects"):
        ta, tb = (pq.read_table(p / f"{table}.parquet") for p in (a, b))
        assert ta.schema == tb.schema and json.dumps(ta.to_pylist()) == json.dumps(tb.to_pylist())  # NaN boxes
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["options_fingerprint"] == mb["options_fingerprint"] and ma["scenes"].keys() == mb["scenes"].keys()
    for s in SCENES:
        fa, fb = (pq.read_table(p / "scenes" / s / "frames.parquet") for p in (a, b))
        assert fa.equals(fb)
        ga, gb = (zarr.open_group(p / "scenes" / s / "arrays.zarr", mode="r") for p in (a, b))
        names = sorted(name for name, _ in _walk(ga))
        assert names == sorted(name for name, _ in _walk(gb)) and "bev/rgb" in names
        for name, arr in _walk(ga):
            np.testing.assert_array_equal(arr[...], gb[name][...])


def _walk(group, prefix=""):
    for name, member in group.members():
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Group):
            yield from _walk(member, path + "/")
        else:
            yield path, member


def test_process_pool_equals_single(single):
    report = prep_scannet(single / "scans", single / "pool", OPTIONS, workers=2)
    assert sorted(report.ok) == SCENES
    assert_same_prep(single / "single", single / "pool")


def test_ray_equals_single(single):
    report = prep_scannet(single / "scans", single / "ray", OPTIONS, executor="ray")
    assert sorted(report.ok) == SCENES
    assert_same_prep(single / "single", single / "ray")
