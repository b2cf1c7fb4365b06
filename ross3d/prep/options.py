"""Options of `ross3d prep scannet` that change what is written, and their fingerprint (a committed scene is
reused only when the fingerprint matches)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ross3d.errors import ConfigError
from ross3d.prep.sources import SourceOptions

FORMAT_VERSION = 1
STRATEGIES = ("uniform", "max-coverage")
MAX_COVERAGE_ORDERS = ("frame", "greedy")
# TSDF fusion defaults (prep/fusion.py); kept here so reading options never imports the fusion stack (cv2, open3d)
FUSE_VOXEL_SIZE = 0.04  # metres, the default of --fuse-voxel-size
FUSE_TRUNCATION = 0.12  # metres (3 voxels), the default of --fuse-trunc
FUSION_FIELDS = ("fuse_mesh", "fuse_voxel_size", "fuse_trunc")


@dataclass(frozen=True)
class PrepOptions:
    """Per-scene processing options; executors and resume flags are not part of it (they do not change output)."""

    frame_stride: int = 10
    num_frames: int = 32
    bev_size: int = 432
    seed: int = 0
    # the original counts zero-depth pixels as points at the camera centre (coverage, token means, membership);
    # True drops them (docs/model.md, differences from the original)
    exclude_zero_depth: bool = False
    # the order in which max-coverage frames reach the model: "frame" (by frame number, as the original's loader)
    # or "greedy" (pick order)
    max_coverage_order: str = "frame"
    # a scene without a scan mesh gets one by TSDF fusion of its kept frames (ross3d.prep.fusion): voxel size and
    # truncation distance in metres
    fuse_mesh: bool = False
    fuse_voxel_size: float = FUSE_VOXEL_SIZE
    fuse_trunc: float = FUSE_TRUNCATION
    sources: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self) -> None:
        for key in ("frame_stride", "num_frames", "bev_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.max_coverage_order not in MAX_COVERAGE_ORDERS:
            raise ConfigError(f"--max-coverage-order must be one of {', '.join(MAX_COVERAGE_ORDERS)}, "
                              f"got {self.max_coverage_order!r}")
        if not self.fuse_voxel_size > 0 or not self.fuse_trunc >= self.fuse_voxel_size:
            raise ConfigError(f"--fuse-voxel-size must be > 0 and --fuse-trunc at least the voxel size, got "
                              f"{self.fuse_voxel_size} and {self.fuse_trunc}")

    def to_dict(self) -> dict:
        """The processing options (the input choices are `sources.to_dict()`); the fusion ones only with
        `fuse_mesh`, so runs without it keep their fingerprint."""
        out = asdict(self)
        del out["sources"]
        if not self.fuse_mesh:
            for key in FUSION_FIELDS:
                del out[key]
        return out

    def fingerprint(self) -> str:
        """sha256 over the format version, the options and what of the input choices changes outputs (16 hex
        digits; the default `.sens` inputs add nothing)."""
        text = json.dumps({"format_version": FORMAT_VERSION, **self.to_dict(), **self.sources.fingerprint_fields()},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
