"""Does a model beat the trivial baselines honestly? The rules of docs/demo.md, applied to one benchmark's answer
lines, its METRICS.json and its BASELINE.json.

A benchmark is `degenerate` when its predictions collapse: fewer than MIN_DISTINCT distinct predictions (one
answer for every question, the empty set for every Multi3DRefer query, the same box for every ScanRefer query).
A win is honest when the benchmark is not degenerate and the model beats the baseline on every required metric,
with the extra bars of docs/demo.md: ScanRefer at least twice the random-proposal accuracy, Multi3DRefer also
above the baseline on each single-target type (st_w_d, st_wo_d) and on the multi-target type (mt).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ross3d.eval.grounding_metrics import select_boxes
from ross3d.eval.text_metrics import clean_answer

MIN_DISTINCT = 3
# metrics the model must beat the baseline on (percentages from METRICS.json / BASELINE.json)
REQUIRED = {"scanqa": ("EM", "CIDEr"), "sqa3d": ("EM",), "scan2cap": ("CIDEr",), "scanrefer": ("all/Acc@0.25",),
            "multi3drefer": ("all/F1@0.25", "st_w_d/F1@0.25", "st_wo_d/F1@0.25", "mt/F1@0.25")}
SCANREFER_FACTOR = 2.0  # ScanRefer must reach this multiple of the random-proposal accuracy


def prediction_key(benchmark: str, line: dict):
    """A hashable form of one line's prediction: the normalised answer, the box, or the selected box set."""
    if benchmark == "scanrefer":
        return _box(line["pred_response"])
    if benchmark == "multi3drefer":
        boxes = select_boxes(np.asarray(line["scores"]), np.asarray(line["objects"]).reshape(-1, 6))
        return tuple(sorted(_box(b) for b in boxes))
    return clean_answer(str(line["pred_response"]))


def _box(box) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in box)


def _describe(key) -> str:
    """A prediction key in words: a text answer quoted, a box or a set of boxes by its size."""
    if isinstance(key, str):
        return repr(key)
    if key == ():
        return "the empty set"
    return "one box" if isinstance(key[0], float) else f"a set of {len(key)} box(es)"


def prediction_counts(benchmark: str, lines: list[dict]) -> Counter:
    return Counter(prediction_key(benchmark, line) for line in lines)


def degenerate(benchmark: str, lines: list[dict]) -> str | None:
    """Why the predictions have collapsed, or None."""
    counts = prediction_counts(benchmark, lines)
    if len(counts) >= MIN_DISTINCT:
        return None
    shown = ", ".join(_describe(k) for k in counts)
    return f"{len(counts)} distinct prediction(s) over {len(lines)} samples ({shown})"


def verdict(benchmark: str, metrics: dict, baseline: dict, lines: list[dict]) -> dict:
    """{required: {metric: [model, baseline]}, degenerate: reason | None, honest_win: bool, reasons: [...]}."""
    reasons, required = [], {}
    for key in REQUIRED[benchmark]:
        model_value, base_value = metrics.get(key), baseline.get(key)
        required[key] = [model_value, base_value]
        if model_value is None or base_value is None:
            reasons.append(f"{key} missing")
        elif not model_value > base_value:
            reasons.append(f"{key} {model_value:.1f} <= baseline {base_value:.1f}")
    if benchmark == "scanrefer":
        key = REQUIRED["scanrefer"][0]
        model_value, base_value = required[key]
        if model_value is not None and base_value is not None and model_value < SCANREFER_FACTOR * base_value:
            reasons.append(f"{key} {model_value:.1f} < {SCANREFER_FACTOR:g}x random {base_value:.1f}")
    why = degenerate(benchmark, lines)
    if why:
        reasons.append(f"degenerate: {why}")
    return {"required": required, "degenerate": why, "honest_win": not reasons, "reasons": reasons}
