"""TSDF fusion of posed RGB-D frames into a coloured triangle mesh, for scenes without a scan mesh
(`prep scannet --fuse-mesh`, docs/data-format.md "Fused meshes").

open3d's tensor `VoxelBlockGrid` (tsdf, weight and colour per voxel, blocks of 16^3 voxels on the CPU) integrates
each valid kept frame: depth with the depth intrinsics, colour (the frame's JPEG, decoded) with the colour
intrinsics, under the axis-aligned camera-to-world pose, so the mesh comes out in the aligned frame. Depth beyond
DEPTH_MAX metres is ignored (far readings of consumer sensors are noisy). The surface is extracted by marching
cubes over the voxels whose weight (frames that observed them) exceeds WEIGHT_THRESHOLD: open3d's test is strict,
so 0.5 keeps surfaces a single frame saw (1.0 drops them: BEV recall 0.64-0.73 instead of 0.75-0.82 on the
synthetic rooms of tests/test_prep_fuse_mesh.py). The legacy `ScalableTSDFVolume` is not used: in open3d 0.20 it
integrated nothing on these inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

from ross3d.errors import InputError
from ross3d.open3d_core import open3d_core
from ross3d.prep.options import FUSE_TRUNCATION, FUSE_VOXEL_SIZE
from ross3d.scannet.scene import SceneMesh

DEPTH_MAX = 6.0  # metres
WEIGHT_THRESHOLD = 0.5  # voxels of weight above it are kept: whatever one frame or more observed
BLOCK_RESOLUTION = 16
INITIAL_BLOCKS = 2000  # hash map capacity to start with; it grows as the scene needs


class TsdfFusion:
    """Integrate frames one at a time (`integrate`), then `mesh()`; intrinsics are 3x3 or 4x4 pinhole matrices."""

    def __init__(self, k_depth: np.ndarray, k_color: np.ndarray, depth_shift: float,
                 voxel_size: float = FUSE_VOXEL_SIZE, truncation: float = FUSE_TRUNCATION):
        o3d = open3d_core()
        self._o3d = o3d
        f32 = o3d.core.Dtype.Float32
        self._grid = o3d.t.geometry.VoxelBlockGrid(
            ["tsdf", "weight", "color"], [f32, f32, f32], [[1], [1], [3]], voxel_size, BLOCK_RESOLUTION,
            INITIAL_BLOCKS)
        self._k_depth = o3d.core.Tensor(np.asarray(k_depth, np.float64)[:3, :3])
        self._k_color = o3d.core.Tensor(np.asarray(k_color, np.float64)[:3, :3])
        self._depth_shift = float(depth_shift)
        self._trunc_voxels = truncation / voxel_size
        self.frames = 0

    def integrate(self, depth: np.ndarray, color_jpeg: bytes, cam_to_world: np.ndarray) -> None:
        """Add one frame: uint16 depth (H, W), the colour JPEG and its camera-to-world pose (aligned frame)."""
        o3d = self._o3d
        bgr = cv2.imdecode(np.frombuffer(color_jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("colour JPEG cannot be decoded")
        depth_image = o3d.t.geometry.Image(o3d.core.Tensor(np.ascontiguousarray(depth, np.uint16)))
        color_image = o3d.t.geometry.Image(o3d.core.Tensor(np.ascontiguousarray(bgr[..., ::-1])))
        extrinsic = o3d.core.Tensor(np.linalg.inv(np.asarray(cam_to_world, np.float64)))
        blocks = self._grid.compute_unique_block_coordinates(depth_image, self._k_depth, extrinsic,
                                                             self._depth_shift, DEPTH_MAX, self._trunc_voxels)
        self._grid.integrate(blocks, depth_image, color_image, self._k_depth, self._k_color, extrinsic,
                             self._depth_shift, DEPTH_MAX, self._trunc_voxels)
        self.frames += 1

    def mesh(self, source: object) -> SceneMesh:
        """The fused surface (float64 vertices, uint8 colours, int32 faces); InputError naming `source` when no
        surface came out (no valid frame, or no depth within DEPTH_MAX)."""
        mesh = self._grid.extract_triangle_mesh(WEIGHT_THRESHOLD) if self.frames else None
        if mesh is None or "positions" not in mesh.vertex or len(mesh.triangle.indices) == 0:
            raise InputError(source, f"TSDF fusion of {self.frames} frames gave no surface")
        vertices = mesh.vertex.positions.numpy().astype(np.float64)
        colors = np.clip(np.rint(mesh.vertex.colors.numpy() * 255.0), 0, 255).astype(np.uint8)
        return SceneMesh(vertices, colors, mesh.triangle.indices.numpy().astype(np.int32))
