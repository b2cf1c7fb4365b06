"""Training metrics: the per-optimizer-step record (OUTPUT_DIR/log.jsonl, README.md, Stage 3), TensorBoard and
optional wandb, a callback for the console line, and the loss-curve PNG at the end. Only rank 0 writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

LOSS_KEYS = ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss")
WANDB_RUN = "wandb_run.json"  # the run id, so that a resumed run continues the same W&B run


def wandb_resume(output_dir: Path, resuming: bool) -> dict:
    """wandb.init arguments that continue the run folder's W&B run when resuming (none for a fresh run)."""
    path = Path(output_dir) / WANDB_RUN
    if not resuming or not path.exists():
        return {}
    return {"id": json.loads(path.read_text())["id"], "resume": "must"}


class MetricsLogger:
    """Writes one record per logged step; `on_record` (e.g. the CLI's console line) sees each record."""

    def __init__(self, output_dir: str | Path, every: int, is_main: bool, tensorboard: bool,
                 wandb_project: str | None, config: dict, on_record: Callable[[dict], None] | None = None,
                 resume_step: int | None = None):
        self.output_dir, self.every, self.is_main = Path(output_dir), every, is_main
        self.on_record = on_record
        self._file = self._tb = self._wandb = None
        if not is_main:
            return
        path = self.output_dir / "log.jsonl"
        kept = [r for r in read_log(path) if r["step"] <= resume_step] if resume_step is not None and path.exists() \
            else []  # a resumed run drops records written after its checkpoint
        self._file = path.open("w")
        for record in kept:
            self._file.write(json.dumps(record) + "\n")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))
        if wandb_project:
            import wandb

            self._wandb = wandb.init(project=wandb_project, config=config, dir=str(self.output_dir),
                                     **wandb_resume(self.output_dir, resume_step is not None))
            (self.output_dir / WANDB_RUN).write_text(json.dumps({"id": self._wandb.id}))

    def should_log(self, step: int, last_step: int) -> bool:
        return step % self.every == 0 or step == last_step

    def log(self, record: dict) -> None:
        if not self.is_main:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = record["step"]
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log(record, step=step)
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        if not self.is_main:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        plot_losses(self.output_dir / "log.jsonl", self.output_dir / "loss_curve.png")


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(log_path: Path, png_path: Path) -> Path:
    """Every loss component against the optimizer step (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key in LOSS_KEYS:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=key, linewidth=2 if key == "loss" else 1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
