"""A synthetic RGB-D capture of a room: a smooth camera path inside it, colour and depth ray-cast from the mesh,
written as a ScanNet `.sens` stream with raw-frame camera-to-world poses (x right, y down, z forward)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ross3d.progress import NullProgress, Progress
from ross3d.render import MeshRaycaster, pinhole_rays
from ross3d.scannet.sens import SensWriter
from ross3d.synth.room import SynthRoom

MAX_DEPTH_M = 10.0
LIGHT = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])


def intrinsics(width: int, height: int) -> np.ndarray:
    """4x4 pinhole intrinsics with ScanNet's field of view (fx = 0.9 width, about 70 degrees horizontally)."""
    k = np.eye(4)
    k[0, 0] = k[1, 1] = 0.9 * width
    k[0, 2], k[1, 2] = (width - 1) / 2, (height - 1) / 2
    return k


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world (aligned frame) for a camera at `eye` looking at `target`, ScanNet axes, z up in the world."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def trajectory(room: SynthRoom, n_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A loop around the room 0.9 m from the walls at eye height, looking past the centre and slightly down."""
    w, d, _ = room.size
    ax, ay = w / 2 - 0.9, d / 2 - 0.9
    phase = rng.uniform(0, 2 * np.pi)
    poses = []
    for i in range(n_frames):
        a = phase + 2 * np.pi * i / n_frames
        eye = np.array([ax * np.cos(a), ay * np.sin(a), 1.5 + 0.08 * np.sin(3 * a)])
        b = a + np.pi + 0.6 * np.sin(2 * a)
        target = np.array([0.8 * ax * np.cos(b), 0.8 * ay * np.sin(b), 0.5])
        poses.append(look_at(eye, target))
    return poses


def _face_shading(room: SynthRoom) -> np.ndarray:
    tri = room.vertices[room.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    return 0.55 + 0.45 * np.abs(normals @ LIGHT)


def shaded_colour(caster: MeshRaycaster, shading: np.ndarray, k_color: np.ndarray, color_size: tuple[int, int],
                  pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (H, W, 3) uint8 colour frame: vertex colours times face shading, black where no face is hit, plus
    sensor noise (std 2)."""
    hits = caster.cast(*pinhole_rays(k_color, *color_size, pose))
    rgb = hits.rgb * np.where(hits.hit, shading[np.maximum(hits.face, 0)], 0)[..., None]
    return np.clip(rgb + rng.normal(0, 2.0, rgb.shape), 0, 255).astype(np.uint8)


def render_frames(room: SynthRoom, n_frames: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(n_frames, H, W, 3) uint8 colour frames along the capture trajectory (no .sens written)."""
    caster = MeshRaycaster(room.vertices, room.faces, room.colors)
    shading, k = _face_shading(room), intrinsics(*size)
    return np.stack([shaded_colour(caster, shading, k, size, pose, rng)
                     for pose in trajectory(room, n_frames, rng)])


def write_sens(path: Path, room: SynthRoom, axis_align: np.ndarray, n_frames: int, color_size: tuple[int, int],
               depth_size: tuple[int, int], invalid: set[int], rng: np.random.Generator,
               progress: Progress = NullProgress(), progress_key: str = "frames") -> None:
    """Render every frame from the ALIGNED mesh and store poses in the raw frame (inverse axis alignment)."""
    caster = MeshRaycaster(room.vertices, room.faces, room.colors)
    shading = _face_shading(room)
    k_color, k_depth = intrinsics(*color_size), intrinsics(*depth_size)
    raw_from_aligned = np.linalg.inv(axis_align)
    with SensWriter(path, intrinsic_color=k_color, intrinsic_depth=k_depth, color_size=color_size,
                    depth_size=depth_size) as writer:
        for i, pose in enumerate(trajectory(room, n_frames, rng)):
            rgb = shaded_colour(caster, shading, k_color, color_size, pose, rng)
            jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            t = caster.cast(*pinhole_rays(k_depth, *depth_size, pose)).t
            depth = np.where(np.isfinite(t) & (t < MAX_DEPTH_M), np.rint(t * 1000.0), 0).astype(np.uint16)
            raw_pose = raw_from_aligned @ pose
            if i in invalid:
                raw_pose = np.full((4, 4), -np.inf)
            stamp = i * 33_333
            writer.write_frame(raw_pose, jpeg, depth, stamp, stamp)
            progress.advance(progress_key)
