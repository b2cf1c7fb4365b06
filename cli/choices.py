"""The options with a fixed set of values, as Enums: `--help` lists the values and anything else is a usage error
(one line, see ross3d_cli.app.OneLineErrors). Commands pass `.value` on to the library."""

from __future__ import annotations

from enum import Enum


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class Dtype(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Strategy(str, Enum):
    uniform = "uniform"
    max_coverage = "max-coverage"


class CacheStrategy(str, Enum):
    uniform = "uniform"
    max_coverage = "max-coverage"
    both = "both"


class Sampler(str, Enum):
    ddim = "ddim"
    ddpm = "ddpm"


class Benchmark(str, Enum):
    all = "all"
    scanqa = "scanqa"
    sqa3d = "sqa3d"
    scan2cap = "scan2cap"
    scanrefer = "scanrefer"
    multi3drefer = "multi3drefer"
