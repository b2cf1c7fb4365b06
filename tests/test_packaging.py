"""Packaging: every library package on disk is listed in pyproject.toml, so a non-editable install ships it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ross3d").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "ross3d_cli" in listed and (ROOT / "cli" / "__init__.py").is_file()


def _floors() -> dict[str, str]:
    lines = (ROOT / "constraints" / "floors.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def test_floors_file_pins_every_declared_lower_bound():
    """constraints/floors.txt (what `make test-floors` installs) holds exactly each `>=` bound of pyproject.toml."""
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for extra in ("dev", "ray") for d in project["optional-dependencies"][extra]]
    declared = {}
    for spec in specs:
        name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", spec).groups()
        if not (name == "open3d" and "open3d-cpu" in declared):  # one wheel per platform, the same floor
            declared[name] = floor
    assert declared.get("open3d-cpu") == "0.20" and "tokenizers" in declared
    assert tuple(map(int, declared["torch"].split("."))) >= (2, 3)  # torch.uint16
    floors = _floors()
    assert set(floors) == set(declared)
    for name, floor in declared.items():
        pinned = floors[name].split(".")
        assert pinned[:len(floor.split("."))] == floor.split(".") and set(pinned[len(floor.split(".")):]) <= {"0"}, \
            (name, floor, floors[name])


def test_ray_is_only_an_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [d for d in extras["dev"] if d.startswith("ray")] and extras["ray"][0].startswith("ray>=")
