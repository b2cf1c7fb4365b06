"""Writing meshes in ScanNet's `_vh_clean_2.ply` layout: binary little-endian, float xyz, uchar RGBA vertex colours,
`list uchar int vertex_indices` faces (what open3d and plyfile read back); reading binary little-endian triangle
meshes of that kind (any scalar vertex properties, as open3d writes them too) straight into numpy, for
ross3d.scannet.scene.read_mesh, which leaves every other layout to open3d."""

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


_SCALARS = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
            "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
            "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}
_RGB = ("red", "green", "blue")


def read_header(data: bytes) -> tuple[list[list[str]], list[tuple[str, int, list[list[str]]]], int] | None:
    """A ply header at the start of `data`: its lines as words, its elements (name, count, property lines as words)
    and the body offset; None without `ply` ... `end_header`."""
    end = data.find(b"end_header")
    newline = data.find(b"\n", end)
    if not data.startswith(b"ply") or end < 0 or newline < 0:
        return None
    lines = [line.split() for line in data[:end].decode("ascii", "replace").splitlines()]
    elements: list[tuple[str, int, list[list[str]]]] = []
    for words in lines:
        if words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            elements[-1][2].append(words[1:])
    return lines, elements, newline + 1


def read_triangle_ply(data: bytes) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """Vertices (V, 3) float64, uchar colours (V, 3) or None without red/green/blue, and faces (F, 3) int32 of a
    binary little-endian ply with a vertex element of scalar properties, then a face element whose one property
    is a list of three indices per face (`vertex_indices` or `vertex_index`, the names open3d reads). None for
    any other layout, or a body shorter than its header declares."""
    parsed = read_header(data)
    if parsed is None or ["format", "binary_little_endian", "1.0"] not in parsed[0]:
        return None
    _, elements, offset = parsed
    if [e[0] for e in elements] != ["vertex", "face"]:
        return None
    (_, n_vertices, vertex_props), (_, n_faces, face_props) = elements
    if any(len(p) != 2 or p[0] not in _SCALARS for p in vertex_props) or len(face_props) != 1:
        return None
    names = [p[1] for p in vertex_props]
    face = face_props[0]
    colour_types = {p[0] for p in vertex_props if p[1] in _RGB}
    if len(face) != 4 or face[0] != "list" or face[1] not in _SCALARS or face[2] not in _SCALARS \
            or face[3] not in ("vertex_indices", "vertex_index") \
            or not {"x", "y", "z"} <= set(names) or len(set(names)) != len(names) \
            or not (colour_types <= {"uchar", "uint8"} and sum(n in _RGB for n in names) in (0, 3)):
        return None
    vertex_type = np.dtype([(n, _SCALARS[t]) for t, n in vertex_props])
    face_type = np.dtype([("n", _SCALARS[face[1]]), ("idx", _SCALARS[face[2]], 3)])
    if offset + n_vertices * vertex_type.itemsize + n_faces * face_type.itemsize > len(data):
        return None
    vertex = np.frombuffer(data, vertex_type, n_vertices, offset)
    faces = np.frombuffer(data, face_type, n_faces, offset + vertex.nbytes)
    if (faces["n"] != 3).any():
        return None
    vertices = np.stack([vertex[axis].astype(np.float64) for axis in "xyz"], axis=1)
    colors = np.stack([vertex[c] for c in _RGB], axis=1) if colour_types else None
    return vertices, colors, faces["idx"].astype(np.int32)
