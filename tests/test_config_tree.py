"""Typed config trees: YAML deltas, dotted overrides, and errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from ross3d.config_tree import load_config, to_dict
from ross3d.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Run:
    name: str = "run"
    steps: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpointing: bool = False
    optim: Optim = field(default_factory=Optim)


def test_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: tiny\noptim:\n  lr: 0.001\n")
    cfg = load_config(Run, cfg_file, ["steps=7", "optim.betas=[0.8, 0.9]", "precision=bf16"])
    assert cfg == Run(name="tiny", steps=7, precision="bf16", optim=Optim(lr=0.001, betas=[0.8, 0.9]))
    assert to_dict(cfg)["optim"]["lr"] == 0.001
    assert load_config(Run, None, ["steps=null"]).steps is None
    assert load_config(Run, None, ["optim.lr=3"]).optim.lr == 3.0


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key optim.lrr"),
    ("steps=many", "steps: expected"),
    ("precision=fp8", "precision: must be one of"),
    ("checkpointing=1", "checkpointing: expected true/false"),
    ("optim=3", "optim: expected a mapping"),
    ("optim.betas=[a, 1]", "optim.betas[0]: expected a number"),
    ("novalue", "not of the form key=value"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(Run, None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(Run, bad)


@pytest.mark.parametrize("spelling, value", [
    ("1e-5", 1e-5), ("1E-5", 1e-5), ("1.0e-5", 1e-5), ("+1e-5", 1e-5), ("-2e3", -2000.0), ("1e+3", 1000.0),
    (".5", 0.5), ("5.", 5.0), ("0.001", 0.001), ("3", 3.0), ("1_000.5", 1000.5),
])
def test_every_float_spelling_is_a_number(tmp_path, spelling, value):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"optim:\n  lr: {spelling}\n")
    assert load_config(Run, cfg_file).optim.lr == value
    assert load_config(Run, None, [f"optim.lr={spelling}"]).optim.lr == value
    assert load_config(Run, None, [f"name={spelling}x"]).name == f"{spelling}x"  # strings stay strings


@pytest.mark.parametrize("override, message", [
    ("optim.lr=.inf", "optim.lr: must be a finite number"),
    ("optim.lr=-.inf", "optim.lr: must be a finite number"),
    ("optim.lr=.nan", "optim.lr: must be a finite number"),
    ("optim.betas=[0.9, .nan]", r"optim.betas\[1\]: must be a finite number"),
    ("optim.lr=[", "override optim.lr: invalid YAML"),
])
def test_non_finite_and_unparsable_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(Run, None, [override])
    assert "\n" not in str(err.value)


def test_non_utf8_config_is_a_one_line_error(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 9\)") as err:
        load_config(Run, bad)
    assert "\n" not in str(err.value)
