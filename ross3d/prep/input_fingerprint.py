"""A scene's input fingerprint: size and modification time (ns) of every file `prep scannet` reads for the scene,
and which of them are absent, hashed to 16 hex digits. Recorded per scene (result.json, manifest.json), it lets a
re-run redo a scene whose inputs changed, were added or were removed since it was committed. Files shared by all
scenes (EmbodiedScan infos, selection and box files) are hashed into the options fingerprint instead."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ross3d.prep.sources import SourceOptions
from ross3d.safe_names import child_path
from ross3d.scannet.scene import scan_paths


def scene_input_files(scans_dir: Path, scene_id: str, sources: SourceOptions) -> list[tuple[str, Path]]:
    """(root kind, path) of each file the scene's job may read."""
    paths = scan_paths(scans_dir, scene_id)
    files = [("scans", p) for p in (paths.meta, paths.mesh, paths.aggregation, paths.segs)]
    if sources.source == "posed-images":
        folder = child_path(sources.posed_images, scene_id)
        files += [("posed_images", p) for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []
    elif sources.source == "posed-rgbd":
        folder = child_path(sources.rgbd, scene_id)
        files += [("rgbd", p) for p in sorted(folder.rglob("*")) if p.is_file()] if folder.is_dir() else []
    else:
        files.append(("scans", paths.sens))
    if sources.bev_images:
        files.append(("bev_images", child_path(sources.bev_images, scene_id) / "view_0.jpg"))
    return files


def input_fingerprint(scans_dir: Path, scene_id: str, sources: SourceOptions) -> str:
    """16 hex digits of sha256 over `kind/name size mtime_ns` (or `kind/name absent`) of the scene's input files."""
    h = hashlib.sha256()
    for kind, path in scene_input_files(scans_dir, scene_id, sources):
        try:
            st = path.stat()
            h.update(f"{kind}/{path.name} {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:  # absent or unreadable (the job reports which)
            h.update(f"{kind}/{path.name} absent\n".encode())
    return h.hexdigest()[:16]
