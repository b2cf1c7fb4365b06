"""Grounding candidates for evaluation: the GT objects cached for training, or imported proposals
(PREP_DIR/proposals.parquet, e.g. Mask3D boxes) with their (frame, patch) membership computed from the PREP
geometry of the selected frames by the same rule as the GT objects (ross3d.prep.membership), zero-depth pixels
treated as the PREP run treated them (its manifest's `exclude_zero_depth`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ross3d.errors import InputError
from ross3d.prep.geometry import frame_crop_points
from ross3d.prep.membership import membership
from ross3d.safe_names import child_path

DEPTH_SHIFT = 1000.0  # ScanNet depth is stored in millimetres


def _rows(path: Path, scene_id: str, columns: list[str] | None = None) -> list[dict]:
    if not path.is_file():
        raise InputError(path, "missing")
    table = pq.read_table(path, columns=columns)
    return table.filter(pc.equal(table["scene_id"], scene_id)).to_pylist()


def _exclude_zero_depth(manifest: Path) -> bool:
    """The PREP run's zero-depth choice; a manifest without the option predates it (zero depth was excluded)."""
    try:
        return bool(json.loads(manifest.read_text())["options"].get("exclude_zero_depth", True))
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise InputError(manifest, f"cannot read the PREP options: {err}") from None


class ProposalSource:
    """Per scene: proposal boxes (N, 6) and membership (N, V, 27, 27) for one frame-selection strategy."""

    def __init__(self, prep_dir: str | Path, strategy: str):
        from ross3d.prep.qa.proposals import read_proposals

        self.prep_dir, self.strategy = Path(prep_dir), strategy
        path = self.prep_dir / "proposals.parquet"
        self.available = path.is_file()
        self._boxes = read_proposals(path) if self.available else {}
        self.exclude_zero_depth = _exclude_zero_depth(self.prep_dir / "manifest.json") if self.available else False

    def boxes(self, scene_id: str) -> np.ndarray:
        """The scene's proposals in proposal_id order ((0, 6) when it has none)."""
        return self._boxes.get(scene_id, np.zeros((0, 6), np.float32))

    def membership(self, scene_id: str, boxes: np.ndarray) -> np.ndarray:
        import zarr

        (scene,) = _rows(self.prep_dir / "scenes.parquet", scene_id) or [None]
        if scene is None:
            raise InputError(self.prep_dir / "scenes.parquet", f"no scene {scene_id}")
        picks = sorted(_rows(self.prep_dir / "selections.parquet", scene_id), key=lambda r: r["rank"])
        picks = [r["frame_idx"] for r in picks if r["strategy"] == self.strategy]
        scene_dir = child_path(self.prep_dir / "scenes", scene_id)
        frames = pq.read_table(scene_dir / "frames.parquet", columns=["frame_idx", "pose"])
        position = {int(f): k for k, f in enumerate(frames["frame_idx"].to_pylist())}
        poses = frames["pose"].to_pylist()
        depth = zarr.open_group(str(scene_dir / "arrays.zarr"), mode="r")["depth"]
        axis = np.asarray(scene["axis_align"], np.float64).reshape(4, 4)
        intrinsic = np.asarray(scene["intrinsic_depth"], np.float64).reshape(4, 4)
        points, valid = zip(*(frame_crop_points(depth[position[f]], intrinsic,
                                                axis @ np.asarray(poses[position[f]], np.float64).reshape(4, 4),
                                                DEPTH_SHIFT, self.exclude_zero_depth) for f in picks))
        return membership(np.stack(points), np.stack(valid), boxes)
