"""Mesh ray casting: hit depth equals z-depth, colours are the barycentric mix of vertex colours."""

from __future__ import annotations

import numpy as np

from ross3d.render import MeshRaycaster, pinhole_rays


def test_colour_is_barycentric_interpolation():
    # One triangle in the plane z = 2 with red, green and blue corners.
    vertices = np.array([[0, 0, 2], [1, 0, 2], [0, 1, 2]], float)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    caster = MeshRaycaster(vertices, np.array([[0, 1, 2]]), colors)
    points = np.array([[0.25, 0.5], [0.1, 0.1], [0.6, 0.3], [2.0, 2.0]])
    origins = np.concatenate([points, np.zeros((4, 1))], 1)
    hits = caster.cast(origins, np.array([0.0, 0.0, 1.0]))
    assert hits.hit.tolist() == [True, True, True, False]
    np.testing.assert_allclose(hits.t[:3], 2.0, atol=1e-6)
    for (x, y), rgb in zip(points[:3], hits.rgb[:3]):
        expected = (1 - x - y) * colors[0] + x * colors[1] + y * colors[2]
        np.testing.assert_allclose(rgb, expected, atol=1.0)
    assert hits.face.tolist() == [0, 0, 0, -1] and hits.rgb[3].tolist() == [0, 0, 0]


def test_pinhole_depth_unprojects_onto_the_surface():
    # A wall at z = 3 in camera space seen by a rotated camera: t equals z-depth for every pixel.
    k = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
    pose = np.eye(4)
    angle = 0.3
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = [1.0, -0.5, 0.2]
    wall = np.array([[-50, -50, 3], [50, -50, 3], [50, 50, 3], [-50, 50, 3]], float)
    world = wall @ pose[:3, :3].T + pose[:3, 3]
    caster = MeshRaycaster(world, np.array([[0, 1, 2], [0, 2, 3]]), np.full((4, 3), 90, np.uint8))
    origins, directions = pinhole_rays(k, 16, 12, pose)
    hits = caster.cast(origins, directions)
    assert hits.hit.all() and hits.t.shape == (12, 16)
    np.testing.assert_allclose(hits.t, 3.0, atol=1e-4)
    v, u = np.mgrid[0:12, 0:16]
    cam = np.stack([(u - 7.5) * hits.t / 20.0, (v - 5.5) * hits.t / 20.0, hits.t], -1)
    back = cam @ pose[:3, :3].T + pose[:3, 3]
    np.testing.assert_allclose(back, origins + hits.t[..., None] * directions, atol=1e-4)


def test_prep_loads_no_plotting_stack(tmp_path):
    """Reading a mesh and ray casting it load open3d's compiled module only: no open3d.visualization, dash or
    plotly (a fresh interpreter, as a prep worker)."""
    import subprocess
    import sys

    from ross3d.scannet.ply import write_scannet_ply

    ply = tmp_path / "m_vh_clean_2.ply"
    write_scannet_ply(ply, np.array([[0, 0, 2], [1, 0, 2], [0, 1, 2]], float),
                      np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8), np.array([[0, 1, 2]]))
    code = (
        "import sys, numpy as np\n"
        "from ross3d.scannet.scene import read_mesh\n"
        "from ross3d.render import MeshRaycaster\n"
        f"m = read_mesh({str(ply)!r})\n"
        "hit = MeshRaycaster(m.vertices, m.faces, m.colors).cast(np.array([[0.2, 0.2, 0.0]]), np.array([0, 0, 1.0]))\n"
        "print(float(hit.t[0]), sorted(n for n in ('open3d', 'open3d.visualization', 'dash', 'plotly')"
        " if n in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert abs(float(out[0]) - 2.0) < 1e-5 and out[1:] == ["[]"]
