"""Command-line polish: options with a fixed set of values list them in `--help` and refuse anything else with one
line naming the option; a deepspeed launcher's `--local_rank=N` is accepted; `ross3d train --print-config` prints
the resolved config with every key, marking the values that differ from their defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ross3d_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}

CHOICES = [  # (command, option, its values as listed, a bad value)
    (["eval", "run"], "--benchmark", "all|scanqa|sqa3d|scan2cap|scanrefer|multi3drefer", "scannet"),
    (["eval", "run"], "--strategy", "uniform|max-coverage", "random"),
    (["cache-latents"], "--strategy", "uniform|max-coverage|both", "all"),
    (["cache-latents"], "--dtype", "fp32|bf16|fp16", "fp64"),
    (["prep", "scannet"], "--executor", "local|ray", "slurm"),
    (["visualize"], "--sampler", "ddim|ddpm", "euler"),
    (["visualize"], "--strategy", "uniform|max-coverage", "both"),
]


@pytest.mark.parametrize("command,option,listed,bad", CHOICES)
def test_help_lists_the_choices(command, option, listed, bad):
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if option in x)
    assert listed in line.replace(" ", ""), line


@pytest.mark.parametrize("command,option,listed,bad", CHOICES)
def test_a_bad_choice_is_a_one_line_error(command, option, listed, bad, tmp_path):
    args = {"eval": ["--checkpoint", str(tmp_path), "--cache", str(tmp_path), "--samples", str(tmp_path),
                     "--out", str(tmp_path)],
            "cache-latents": [str(tmp_path), str(tmp_path), "--vae", str(tmp_path)],
            "prep": [str(tmp_path), str(tmp_path)],
            "visualize": [str(tmp_path), "--cache", str(tmp_path), "--samples", str(tmp_path), "--scene", "s",
                          "--json"]}[command[0]]
    result = runner.invoke(app, [*command, *args, option, bad], env=WIDE)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: ross3d {' '.join(command)}: Invalid value for '{option}'")
    assert f"'{bad}' is not one of" in lines[0]
    assert all(f"'{value}'" in lines[0] for value in listed.split("|"))


def test_the_deepspeed_launchers_local_rank_is_accepted():
    result = runner.invoke(app, ["--local_rank=0", "eval", "run", "--help"])
    assert result.exit_code == 0 and "--checkpoint" in result.output


def test_print_config_shows_every_key_and_marks_changed_defaults():
    from ross3d.train.config import TrainConfig

    result = runner.invoke(app, ["train", str(ROOT / "configs/tiny.yaml"), "--print-config",
                                 "--set", "optim.lr=0.5"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    expected = dataclasses.asdict(TrainConfig())
    expected.update(yaml.safe_load((ROOT / "configs/tiny.yaml").read_text()) or {})
    for section in ("data", "model", "optim"):
        expected[section] = {**dataclasses.asdict(TrainConfig())[section],
                             **(yaml.safe_load((ROOT / "configs/tiny.yaml").read_text()).get(section) or {})}
    expected["optim"]["lr"] = 0.5
    assert printed == expected
    lines = result.output.splitlines()
    assert "  lr: 0.5  # default: 1.0e-05" in lines
    assert "seed: 0" in lines  # a default value, unmarked
