"""`ross3d train CONFIG.yaml`: the DeepSpeed trainer over PREP samples and the latent cache (logic in ross3d.train).

Runs as one process, or under `deepspeed` / `torchrun` (one or many nodes): every rank runs the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _console_line(record: dict) -> None:
    from ross3d_cli.console import console

    norm = record["grad_norm"]
    console.print(
        f"[bold]step {record['step']:>6}[/] [cyan]{record['task']:<20}[/] loss [bold]{record['loss']:.4f}[/] "
        f"(lm {record['lm_loss']:.3f} vm {record['vm_loss']:.3f} bev {record['bev_loss']:.3f} "
        f"ground {record['ground_loss']:.3f})  lr {record['lr']:.2e}  "
        f"|g| {'-' if norm is None else f'{norm:.2f}'}  {record['samples_per_s']:.2f} samples/s  "
        f"data wait {100 * record['data_wait_fraction']:.1f}%", highlight=False)


def train(
    config: Path = typer.Argument(..., help="YAML config (deltas against the defaults; see configs/)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Run directory (overrides output_dir)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT_DIR's latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run's outputs in OUTPUT_DIR."),
    allow_change: Optional[List[str]] = typer.Option(None, "--allow-change", help="With --resume: a config key "
                                                     "(or section) that may differ from the checkpoint's "
                                                     "(repeatable)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="key=value override (repeatable), "
                                                  "e.g. --set optim.lr=0.0001 --set data.num_workers=0."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config (every key; "
                                      "`# default:` where a value differs) as YAML and exit."),
) -> None:
    """Train Ross3D with DeepSpeed on cached tensors; writes log.jsonl, checkpoints/ and checkpoints/final."""
    import os

    from ross3d.config_tree import annotated_yaml
    from ross3d.train.config import TrainConfig, load_train_config
    from ross3d.train.loop import train as run
    from ross3d_cli.console import console, user_errors

    extra = list(overrides or [])
    if max_steps is not None:
        extra.append(f"max_steps={max_steps}")
    if output_dir is not None:
        extra.append(f"output_dir={output_dir}")
    main = os.environ.get("RANK", "0") == "0"
    with user_errors():
        cfg = load_train_config(config, extra)
        if print_config:
            typer.echo(annotated_yaml(cfg, TrainConfig()))
            return
        result = run(cfg, resume=resume, on_record=_console_line if main else None, overwrite=overwrite,
                     allow_changes=tuple(allow_change or ()))
    if main:
        losses = "" if result.first_loss is None else f"; loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
        console.print(f"{result.steps} steps{losses}; model: {result.export_dir}; "
                      f"log: {result.output_dir / 'log.jsonl'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
