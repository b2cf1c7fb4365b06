"""Corrupt inputs fail their scene instead of being committed `ok` (a `.ply` truncated to two-thirds, the segs file
of another scene), and each scene's input fingerprint makes a re-run redo a scene whose files changed."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from prep_scannet_scene import write_scene

from ross3d.prep.options import PrepOptions
from ross3d.prep.run import prep_scannet

OPTIONS = PrepOptions(frame_stride=2, num_frames=4, bev_size=32)
GOOD, TRUNCATED, FOREIGN_SEGS = "scene0000_00", "scene0001_00", "scene0002_00"


def _segs(scans, scene_id):
    return scans / scene_id / f"{scene_id}_vh_clean_2.0.010000.segs.json"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    scans = root / "scans"
    for k, scene_id in enumerate((GOOD, TRUNCATED, FOREIGN_SEGS)):
        write_scene(scans, scene_id, n_frames=8, invalid=(), seed=k, keep=False)
    write_scene(root / "other", "scene0100_00", n_frames=2, invalid=(), subdivisions=2, keep=False)
    ply = scans / TRUNCATED / f"{TRUNCATED}_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[: ply.stat().st_size * 2 // 3])
    shutil.copy(_segs(root / "other", "scene0100_00"), _segs(scans, FOREIGN_SEGS))
    return root, scans


def test_corrupt_scenes_fail_naming_the_file(scans, tmp_path):
    root, scans = scans
    report = prep_scannet(scans, tmp_path / "prep", OPTIONS)
    assert report.ok == [GOOD] and sorted(report.failed) == [TRUNCATED, FOREIGN_SEGS]
    ply = scans / TRUNCATED / f"{TRUNCATED}_vh_clean_2.ply"
    assert report.failed[TRUNCATED].startswith(f"{ply}: truncated or corrupt: the header declares ")
    own = len(json.loads((root / "other" / "scene0100_00" / "scene0100_00_vh_clean_2.0.010000.segs.json")
                         .read_text())["segIndices"])
    mesh = len(json.loads(_segs(scans, GOOD).read_text())["segIndices"])  # the same room mesh in every scene
    assert own != mesh
    assert report.failed[FOREIGN_SEGS] == (f"{_segs(scans, FOREIGN_SEGS)}: segIndices has {own} entries but the "
                                           f"mesh has {mesh} vertices (a segs file of another scene?)")
    assert sorted(p.name for p in (tmp_path / "prep" / "scenes").iterdir()) == [GOOD]


def test_rerun_redoes_scenes_whose_inputs_changed(scans, tmp_path):
    root, scans = scans
    prep = tmp_path / "prep"
    only = [GOOD]
    first = prep_scannet(scans, prep, OPTIONS, scenes=only)
    recorded = json.loads((prep / "manifest.json").read_text())["scenes"][GOOD]["inputs_fingerprint"]
    assert first.ok == only and len(recorded) == 16
    assert prep_scannet(scans, prep, OPTIONS, scenes=only).skipped == only  # nothing changed
    meta = scans / GOOD / f"{GOOD}.txt"
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, another modification time
    again = prep_scannet(scans, prep, OPTIONS, scenes=only)
    assert again.ok == only and not again.skipped
    changed = json.loads((prep / "manifest.json").read_text())["scenes"][GOOD]["inputs_fingerprint"]
    assert changed != recorded
    assert prep_scannet(scans, prep, OPTIONS, scenes=only).skipped == only
    agg = scans / GOOD / f"{GOOD}.aggregation.json"
    saved = agg.read_bytes()
    agg.unlink()  # an input disappears: the scene is redone (and now fails: its objects file is gone)
    try:
        gone = prep_scannet(scans, prep, OPTIONS, scenes=only)
    finally:
        agg.write_bytes(saved)
    assert list(gone.failed) == only and f"{agg}: file not found" in gone.failed[GOOD]
