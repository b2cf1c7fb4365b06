"""`ross3d inspect scene`: one picture of a prepared scene: thumbnails of the frames each strategy selected, the
BEV with the camera positions of the selected frames, and the coverage curve (cumulative new mesh voxels)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ross3d.errors import InputError
from ross3d.prep.options import STRATEGIES
from ross3d.safe_names import child_path

THUMB = (96, 72)
COLUMNS = 8
MARKERS = {"uniform": ("tab:cyan", "o", 90), "max-coverage": ("tab:orange", "x", 40)}


def _mosaic(jpegs: list[bytes]) -> np.ndarray:
    """Thumbnails in a grid of COLUMNS columns (black where the grid is not full)."""
    from PIL import Image

    columns = min(COLUMNS, len(jpegs))
    rows = -(-len(jpegs) // columns)
    w, h = THUMB
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for n, data in enumerate(jpegs):
        thumb = Image.open(io.BytesIO(data)).convert("RGB").resize(THUMB)
        r, c = divmod(n, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.asarray(thumb)
    return out


def _load(prep_dir: Path, scene_id: str):
    import zarr

    scene_dir = child_path(prep_dir / "scenes", scene_id)
    if not (scene_dir / "result.json").is_file():
        raise InputError(scene_dir, "scene not prepared (no committed result.json)")
    frames = pq.read_table(scene_dir / "frames.parquet")
    sel = pq.read_table(prep_dir / "selections.parquet")
    sel = sel.filter(pc.equal(sel["scene_id"], scene_id)).sort_by("rank").to_pylist()
    scenes = pq.read_table(prep_dir / "scenes.parquet").to_pylist()
    rows = [r for r in scenes if r["scene_id"] == scene_id and r["status"] == "ok"]
    if not rows or not sel:
        raise InputError(prep_dir / "scenes.parquet", f"no prepared row for {scene_id} (prepared with other options?)")
    axis = np.asarray(rows[0]["axis_align"]).reshape(4, 4)
    arrays = zarr.open_group(scene_dir / "arrays.zarr", mode="r")
    return frames, sel, axis, arrays["bev/rgb"][...], arrays["bev/bounds"][...]


def inspect_scene(prep_dir: str | Path, scene_id: str, out_png: str | Path) -> Path:
    """Write the inspection picture of one scene to `out_png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, sel, axis, bev, bounds = _load(Path(prep_dir), scene_id)
    position = {idx: i for i, idx in enumerate(frames["frame_idx"].to_pylist())}
    jpegs = frames["color_jpeg"].to_pylist()
    poses = np.asarray(frames["pose"].to_pylist(), np.float64).reshape(-1, 4, 4)
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    bev_ax = fig.add_subplot(grid[0, 2])
    xmin, ymin, xmax, ymax = bounds
    bev_ax.imshow(bev, extent=(xmin, xmax, ymin, ymax))
    curve_ax = fig.add_subplot(grid[1, 2])
    for row, strategy in enumerate(STRATEGIES):
        rows = [r for r in sel if r["strategy"] == strategy]
        picked = [position[r["frame_idx"]] for r in rows]
        ax = fig.add_subplot(grid[row, :2])
        ax.imshow(_mosaic([jpegs[k] for k in picked]))
        ax.set_title(f"{strategy}: frames {', '.join(str(r['frame_idx']) for r in rows)}", fontsize=8)
        ax.axis("off")
        centres = np.array([(axis @ poses[k])[:3, 3] for k in picked])
        colour, marker, area = MARKERS[strategy]
        style = {"facecolors": "none", "edgecolors": colour} if marker == "o" else {"c": colour}
        bev_ax.scatter(centres[:, 0], centres[:, 1], marker=marker, s=area, linewidths=1.5, label=strategy, **style)
        curve_ax.plot(np.arange(1, len(rows) + 1), np.cumsum([r["new_voxels"] for r in rows]), color=colour,
                      marker=marker, label=strategy)
    bev_ax.set_title(f"{scene_id}: BEV and selected cameras")
    bev_ax.legend(fontsize=8)
    curve_ax.xaxis.get_major_locator().set_params(integer=True)
    curve_ax.set_xlabel("frames selected")
    curve_ax.set_ylabel("mesh voxels covered (0.1 m)")
    curve_ax.legend(fontsize=8)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
