"""The reconstruction picture: per masked view and for the BEV, the ground truth beside the reconstruction and the
unconditioned baseline, each labelled with its latent-space error; a title names scene, sample and step.

The cache holds latents, not pixels, so the "ground truth" image is the VAE decoding of the cached posterior mean
(after the same 27 -> 28 resize the view targets get): it shows what the denoiser is asked to produce, through the
same decoder as the reconstruction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ross3d.model.config import Ross3DConfig
from ross3d.model.reconstruction import decode_latents
from ross3d.visualize.reconstruct import Reconstruction

COLUMNS = ("ground truth (VAE of posterior mean)", "reconstruction", "unconditioned baseline")


def decode_images(config: Ross3DConfig, recs: list[Reconstruction], vae) -> list[np.ndarray]:
    """Per reconstruction an (3, H, W, 3) float array in [0, 1]: ground truth, reconstruction, baseline."""
    out: list[np.ndarray] = []
    for kind in ("view", "bev"):
        mine = [r for r in recs if r.kind == kind]
        if not mine:
            continue
        latents = torch.stack([x for r in mine for x in (r.target, r.sample, r.baseline)])
        images = decode_latents(config, latents, vae).permute(0, 2, 3, 1).cpu().numpy()
        out += [images[3 * i:3 * i + 3] for i in range(len(mine))]
    return out


def _caption(metrics: dict, baseline: bool) -> str:
    pre = "baseline_" if baseline else ""
    return f"latent MSE {metrics[pre + 'mse']:.4f}, cos {metrics[pre + 'cosine']:.3f}"


def write_figure(out_png: str | Path, recs: list[Reconstruction], images: list[np.ndarray], title: str) -> Path:
    """Write the picture (one row per reconstruction, views first, then the BEV) to out_png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(recs), 3, figsize=(9, 3.1 * len(recs) + 0.6), squeeze=False, layout="constrained")
    for row, (rec, triple) in enumerate(zip(recs, images)):
        metrics = rec.metrics()
        for col, image in enumerate(triple):
            ax = axes[row, col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            label = COLUMNS[col] if row == 0 else ""
            if col:
                label = f"{label}\n{_caption(metrics, baseline=col == 2)}".strip()
            ax.set_title(label, fontsize=8)
        axes[row, 0].set_ylabel(rec.name + (" (error on BEV mask)" if rec.kind == "bev" else ""), fontsize=9)
    fig.suptitle(title, fontsize=10)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
