"""The scene selection options shared by prep commands: `--scenes a,b` or `--scene-list FILE`, not both."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def scene_ids(scenes: Optional[str], scene_list: Optional[Path]) -> Optional[list[str]]:
    """The ids given by `--scenes` (comma-separated) or `--scene-list` (one per line, each a safe name); None when
    neither is given. ConfigError when both are."""
    from ross3d.errors import ConfigError
    from ross3d.prep.run import read_scene_list

    if scenes and scene_list:
        raise ConfigError("give --scenes or --scene-list, not both")
    if scene_list:
        return read_scene_list(scene_list)
    return [s.strip() for s in scenes.split(",") if s.strip()] if scenes else None
