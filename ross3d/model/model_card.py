"""The model card of an exported run folder: README.md beside the weights, with how to load the model, its sizes,
the optimizer step it was exported at, the eval metrics when a metrics file exists, and the run's training config.

The step is the one the trainer records in the config (`extra.step`); the metrics are the `METRICS.json` files
`ross3d eval run --out RESULTS` writes per benchmark (RESULTS/<benchmark>/METRICS.json); the training config is the
resolved config the run wrote to OUTPUT_DIR/config.yaml. docs/model.md, "Model card".
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ross3d.errors import InputError
from ross3d.model.config import Ross3DConfig

CARD_NAME = "README.md"
METRICS_NAME = "METRICS.json"
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "vision_dim", "n_frames",
               "pool_grid", "denoiser_dim", "denoiser_depth", "mask_ratio")


def read_metrics(results: Path) -> dict[str, dict]:
    """{benchmark: metrics} from RESULTS/<benchmark>/METRICS.json; {} when there are none."""
    metrics = {}
    for path in sorted(Path(results).glob(f"*/{METRICS_NAME}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(path, f"not a metrics file ({err})") from None
        if not isinstance(data, dict):
            raise InputError(path, "not a metrics file (no JSON object)")
        metrics[path.parent.name] = data
    return metrics


def card_text(config: Ross3DConfig, name: str, training: dict | None = None,
              metrics: dict[str, dict] | None = None) -> str:
    """The card's markdown: YAML front matter, loading, sizes, step, metrics (when given), training config."""
    step = config.extra.get("step")
    lines = ["---", "library_name: transformers", "tags:", "- ross3d", "- 3d", "---", "", f"# Ross3D: {name}", "",
             f"Exported at optimizer step {step}." if step is not None else "No training step recorded.", "",
             "## Loading", "", "```python", "import ross3d  # registers model_type ross3d with the Auto classes",
             "from transformers import AutoModel, AutoTokenizer", "",
             'model = AutoModel.from_pretrained("DIR")  # DIR: this folder',
             'tokenizer = AutoTokenizer.from_pretrained("DIR")', "```", "", "## Model", "", "| field | value |", "|---|---|"]
    lines += [f"| {key} | {getattr(config, key)} |" for key in SIZE_FIELDS]
    if metrics:
        lines += ["", "## Eval metrics", "", "| benchmark | metric | value |", "|---|---|---|"]
        lines += [f"| {bench} | {key} | {value} |" for bench, values in sorted(metrics.items())
                  for key, value in values.items()]
    if training is not None:
        lines += ["", "## Training config", "", "```yaml", yaml.safe_dump(training, sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, config: Ross3DConfig, name: str, training: dict | None = None,
                     results: str | Path | None = None) -> Path:
    """Write FOLDER/README.md for the run `name`; the metrics are read from `results` (an eval output folder) when
    it holds any."""
    folder = Path(folder)
    metrics = read_metrics(Path(results)) if results is not None else {}
    path = folder / CARD_NAME
    path.write_text(card_text(config, name, training, metrics))
    return path
