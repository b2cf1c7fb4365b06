"""Writing meshes in ScanNet's `_vh_clean_2.ply` layout: binary little-endian, float xyz, uchar RGBA vertex colours,
`list uchar int vertex_indices` faces (what open3d and plyfile read back)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_scannet_ply(path: str | Path, vertices: np.ndarray, colors: np.ndarray, faces: np.ndarray) -> None:
    path = Path(path)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vert = np.empty(len(vertices), np.dtype([("xyz", "<f4", 3), ("rgba", "u1", 4)]))
    vert["xyz"] = vertices
    vert["rgba"][:, :3] = colors
    vert["rgba"][:, 3] = 255
    face = np.empty(len(faces), np.dtype([("n", "u1"), ("idx", "<i4", 3)]))
    face["n"] = 3
    face["idx"] = faces
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(header.encode() + vert.tobytes() + face.tobytes())
    os.replace(tmp, path)
