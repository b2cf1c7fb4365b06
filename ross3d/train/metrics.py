"""Training metrics: the per-optimizer-step record (OUTPUT_DIR/log.jsonl, README.md, Stage 3), TensorBoard and
optional wandb, a callback for the console line, and the loss-curve PNG at the end. Only rank 0 writes.

Steps alternate between task groups, and a loss component is 0 on the steps where it does not run (no masked view,
no grounding sample), so the raw values jump. The curve therefore shows, per loss, the steps where it ran as faint
points and their exponential moving average (EMA_DECAY, bias-corrected) as a line; TensorBoard gets the same
average as `train_ema/<loss>` beside the raw `train/<key>` scalars.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

LOSS_KEYS = ("loss", "lm_loss", "vm_loss", "bev_loss", "ground_loss")
EMA_DECAY = 0.9
WANDB_RUN = "wandb_run.json"  # the run id, so that a resumed run continues the same W&B run


def wandb_resume(output_dir: Path, resuming: bool) -> dict:
    """wandb.init arguments that continue the run folder's W&B run when resuming (none for a fresh run)."""
    path = Path(output_dir) / WANDB_RUN
    if not resuming or not path.exists():
        return {}
    return {"id": json.loads(path.read_text())["id"], "resume": "must"}


class Ema:
    """Bias-corrected exponential moving average (as Adam's moment estimates): exact mean of the first value."""

    def __init__(self, decay: float = EMA_DECAY):
        self.decay, self.value, self.weight = decay, 0.0, 0.0

    def update(self, x: float) -> float:
        self.value = self.decay * self.value + (1 - self.decay) * x
        self.weight = self.decay * self.weight + (1 - self.decay)
        return self.value / self.weight


def ran(key: str, value) -> bool:
    """Whether a loss component ran on a step: the total always, a component when it is not exactly 0."""
    return isinstance(value, (int, float)) and (key == "loss" or value != 0)


class MetricsLogger:
    """Writes one record per logged step; `on_record` (e.g. the CLI's console line) sees each record."""

    def __init__(self, output_dir: str | Path, every: int, is_main: bool, tensorboard: bool,
                 wandb_project: str | None, config: dict, on_record: Callable[[dict], None] | None = None,
                 resume_step: int | None = None):
        self.output_dir, self.every, self.is_main = Path(output_dir), every, is_main
        self.on_record = on_record
        self._file = self._tb = self._wandb = None
        self._ema = {key: Ema() for key in LOSS_KEYS}
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
                if key in self._ema and ran(key, value):
                    self._tb.add_scalar(f"train_ema/{key}", self._ema[key].update(value), step)
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


def masking_steps(records: list[dict]) -> list[int]:
    """Steps whose cross-view reconstruction ran (vm_loss not 0): the steps that masked views."""
    return [r["step"] for r in records if ran("vm_loss", r.get("vm_loss"))]


def plot_losses(log_path: Path, png_path: Path) -> Path:
    """One panel per loss component against the optimizer step: faint points where it ran, their EMA as a line,
    masking steps as ticks along the bottom (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    keys = [k for k in LOSS_KEYS if any(ran(k, r.get(k)) for r in records)] or ["loss"]
    masked = masking_steps(records)
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["step"], r[key]) for r in records if ran(key, r.get(key))]
        if points:
            xs, ys = zip(*points)
            ema = Ema()
            ax.scatter(xs, ys, s=6, alpha=0.35, color="tab:blue", linewidths=0)
            ax.plot(xs, [ema.update(y) for y in ys], color="tab:blue", linewidth=1.8, label=f"EMA {EMA_DECAY}")
        if masked:
            ax.plot(masked, [0.0] * len(masked), "|", color="tab:red", markersize=6, alpha=0.6,
                    transform=ax.get_xaxis_transform(), label="masking step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
