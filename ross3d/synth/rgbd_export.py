"""Export ScanNet-layout scans (synthetic or real) in the generic posed RGB-D layout of docs/posed-rgbd.md, so
`ross3d prep scannet --source posed-rgbd` (with `--fuse-mesh` when the meshes are left out) can be tried without a
capture of one's own: `OUT/rgbd/<scene>/color/<idx>.jpg` (the `.sens` JPEG bytes verbatim), `depth/<idx>.png`
(16-bit millimetres: `--depth-scale 1000`), `pose/<idx>.txt` (the raw camera-to-world pose, `%f` text, `-inf` for
invalid poses), `intrinsic_depth.txt` and `intrinsic_color.txt` (3x3), for every stride-th frame. The axis
alignment stays in the scans' `<scene>.txt`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ross3d.progress import NullProgress, Progress
from ross3d.synth.posed_export import write_matrix_txt


def export_posed_rgbd(scans_dir: str | Path, out_dir: str | Path, scenes: list[str] | None = None, *,
                      stride: int = 10, progress: Progress = NullProgress()) -> list[str]:
    """Write OUT/rgbd/<scene>/ for `scenes` (default: every scene folder of SCANS_DIR); returns their ids."""
    import cv2

    from ross3d.scannet.scene import scan_paths
    from ross3d.scannet.sens import SensReader

    scans_dir, out_dir = Path(scans_dir), Path(out_dir)
    scenes = scenes or sorted(p.name for p in scans_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    progress.start("rgbd", len(scenes), "exporting posed RGB-D", unit="scenes")
    for scene_id in scenes:
        root = out_dir / "rgbd" / scene_id
        for sub in ("color", "depth", "pose"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        with SensReader(scan_paths(scans_dir, scene_id).sens) as reader:
            np.savetxt(root / "intrinsic_depth.txt", reader.header.intrinsic_depth[:3, :3])
            np.savetxt(root / "intrinsic_color.txt", reader.header.intrinsic_color[:3, :3])
            for frame in reader.frames(stride):
                (root / "color" / f"{frame.index}.jpg").write_bytes(frame.color_jpeg)
                cv2.imwrite(str(root / "depth" / f"{frame.index}.png"), frame.depth)
                write_matrix_txt(root / "pose" / f"{frame.index}.txt", frame.pose)
        progress.advance("rgbd")
    progress.finish("rgbd")
    return scenes
