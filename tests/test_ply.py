"""ross3d.scannet.ply.read_triangle_ply: binary little-endian triangle meshes read into numpy, from bytes laid out
by hand; every other layout is left to open3d (read_mesh still reads it)."""

import struct

import numpy as np
import pytest

from ross3d.scannet.ply import read_triangle_ply
from ross3d.scannet.scene import read_mesh

VERTICES = [(0.5, -1.25, 2.0), (3.0, 0.0, -0.125), (1.0, 1.0, 1.0), (-2.5, 4.0, 0.25)]
COLOURS = [(10, 200, 30), (0, 0, 255), (255, 128, 1), (7, 8, 9)]
TRIANGLES = [(0, 1, 2), (2, 3, 0)]


def _ply(vertex_props: str, vertex_rows: bytes, face_prop: str, face_rows: bytes, n_faces: int = 2,
         fmt: str = "binary_little_endian") -> bytes:
    header = (f"ply\nformat {fmt} 1.0\ncomment made by hand\nelement vertex {len(VERTICES)}\n{vertex_props}"
              f"element face {n_faces}\nproperty list {face_prop} vertex_indices\nend_header\n")
    return header.encode() + vertex_rows + face_rows


def _open3d_layout() -> bytes:
    """As open3d writes meshes: double xyz, uchar rgb (no alpha), `list uchar uint` faces."""
    rows = b"".join(struct.pack("<3d3B", *v, *c) for v, c in zip(VERTICES, COLOURS))
    faces = b"".join(struct.pack("<B3I", 3, *t) for t in TRIANGLES)
    props = "".join(f"property double {a}\n" for a in "xyz") + "".join(f"property uchar {c}\n" for c in
                                                                        ("red", "green", "blue"))
    return _ply(props, rows, "uchar uint", faces)


def test_open3d_layout_by_hand():
    vertices, colours, faces = read_triangle_ply(_open3d_layout())
    assert vertices.dtype == np.float64 and vertices.tolist() == [list(v) for v in VERTICES]
    assert colours.dtype == np.uint8 and colours.tolist() == [list(c) for c in COLOURS]
    assert faces.dtype == np.int32 and faces.tolist() == [list(t) for t in TRIANGLES]


def test_scannet_layout_with_alpha_and_extra_properties_in_any_order():
    """float xyz interleaved with a normal and RGBA, `list uchar int` faces: only x, y, z and red, green, blue."""
    rows = b"".join(struct.pack("<B f f f 3f B B B", c[2], *v, 0.0, 0.0, 1.0, 255, c[0], c[1])
                    for v, c in zip(VERTICES, COLOURS))
    props = ("property uchar blue\nproperty float x\nproperty float y\nproperty float z\nproperty float nx\n"
             "property float ny\nproperty float nz\nproperty uchar alpha\nproperty uchar red\nproperty uchar green\n")
    faces = b"".join(struct.pack("<B3i", 3, *t) for t in TRIANGLES)
    vertices, colours, got = read_triangle_ply(_ply(props, rows, "uchar int", faces))
    assert vertices.tolist() == [list(v) for v in VERTICES]  # all exact in float32
    assert colours.tolist() == [list(c) for c in COLOURS] and got.tolist() == [list(t) for t in TRIANGLES]


def test_without_colours_read_mesh_uses_grey(tmp_path):
    rows = b"".join(struct.pack("<3f", *v) for v in VERTICES)
    faces = b"".join(struct.pack("<B3i", 3, *t) for t in TRIANGLES)
    data = _ply("".join(f"property float {a}\n" for a in "xyz"), rows, "uchar int", faces)
    assert read_triangle_ply(data)[1] is None
    path = tmp_path / "grey.ply"
    path.write_bytes(data)
    assert read_mesh(path).colors.tolist() == [[128, 128, 128]] * 4


def test_other_layouts_are_left_to_open3d(tmp_path):
    base = _open3d_layout()
    quad = base.replace(b"element face 2", b"element face 1")
    quad = quad[:quad.index(b"end_header\n") + 11 + 4 * 27] + struct.pack("<B4I", 4, 0, 1, 2, 3)
    ascii_ply = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                 "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 2 0\n3 0 1 2\n")
    for data in (quad, base[:-5], ascii_ply.encode(), base.replace(b"uchar red", b"float red"),
                 base.replace(b"binary_little_endian", b"binary_big_endian"),
                 base.replace(b"element face 2", b"element edge 0\nelement face 2"),
                 base.replace(b"vertex_indices", b"corner_ids")):
        assert read_triangle_ply(data) is None
    path = tmp_path / "ascii.ply"
    path.write_text(ascii_ply)
    mesh = read_mesh(path)  # through open3d
    assert mesh.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 2, 0]] and mesh.faces.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("layout", ["open3d", "scannet"])
def test_read_mesh_agrees_with_open3d(tmp_path, layout):
    from ross3d.scannet.ply import write_scannet_ply
    from ross3d.scannet.scene import _read_mesh_open3d

    path = tmp_path / "mesh.ply"
    if layout == "open3d":
        path.write_bytes(_open3d_layout())
    else:
        rng = np.random.default_rng(3)
        write_scannet_ply(path, rng.normal(size=(50, 3)), rng.integers(0, 256, (50, 3)), rng.integers(0, 50, (80, 3)))
    mesh = read_mesh(path)
    vertices, colours, faces = _read_mesh_open3d(path)
    assert mesh.vertices.tobytes() == vertices.tobytes() and mesh.colors.tobytes() == colours.tobytes()
    assert mesh.faces.tobytes() == faces.tobytes()
