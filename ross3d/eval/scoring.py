"""Answer files and scoring: read/write answer lines in the original release's jsonl format, gather references
(from our samples.parquet or the original's llava-style question JSON) and dispatch to the benchmark's metrics;
METRICS.json is a flat object of percentages (plus counts) with a CSV beside it."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from ross3d.errors import InputError

log = logging.getLogger(__name__)
BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")


def read_answers(path: str | Path) -> list[dict]:
    path = Path(path)
    lines = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, start=1):
                if text.strip():
                    lines.append(json.loads(text))
    except FileNotFoundError:
        raise InputError(path, "answers file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {number} is not JSON ({err.msg})") from None
    missing = [k for k in ("sample_id", "gt_response") if lines and k not in lines[0]]
    if missing:
        raise InputError(path, f"answer lines lack {missing} (not the original's answer format)")
    return lines


def write_answers(path: str | Path, lines: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def references_from_samples(path: str | Path, benchmark: str) -> dict[str, dict]:
    """sample_id -> {answers, box_input} from PREP_DIR/samples.parquet."""
    from ross3d.prep.qa.schema import read_samples

    return {s.sample_id: {"answers": list(s.answers), "box_input": s.box_input}
            for s in read_samples(path, tasks=[benchmark])}


def references_from_questions(path: str | Path) -> dict[str, dict]:
    """id -> {answers, box_input} from the original's llava-style question JSON (an array of records)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read question file ({err})") from None
    refs = {}
    for rec in records:
        answers = rec.get("metadata", {}).get("answers") or rec.get("annotations") or \
            [rec["conversations"][1]["value"]]
        refs[str(rec["id"])] = {"answers": list(answers), "box_input": rec.get("box_input")}
    return refs


def _reference(refs: dict[str, dict], sample_id: str) -> dict | None:
    """Exact id, else the original evaluator's normalisation of ScanQA ids to end in `_0`."""
    for key in (sample_id, f"{sample_id}_0", f"{sample_id.rsplit('_', 1)[0]}_0"):
        if key in refs:
            return refs[key]
    return None


def score(benchmark: str, lines: list[dict], references: dict[str, dict] | None = None,
          scan2cap_unmatched: str = "original") -> dict:
    """Metrics of one benchmark's answer lines (percentages); references fill ScanQA's full answer lists and
    Scan2Cap's matched flags where the lines lack them."""
    from ross3d.eval import grounding_metrics as gm
    from ross3d.eval import text_metrics as tm

    if benchmark not in BENCHMARKS:
        raise InputError(benchmark, f"unknown benchmark (choose from {', '.join(BENCHMARKS)})")
    if not lines:
        raise InputError(benchmark, "no answer lines to score")
    if benchmark == "scanqa":
        answers = {}
        for line in lines:
            ref = _reference(references or {}, str(line["sample_id"]))
            answers[line["sample_id"]] = ref["answers"] if ref else [line["gt_response"]]
        if not references:
            log.warning("no references given: ScanQA is scored against each line's gt_response only")
        return tm.scanqa_metrics(lines, answers)
    if benchmark == "sqa3d":
        return tm.sqa3d_metrics(lines)
    if benchmark == "scan2cap":
        for line in lines:
            if "box_input" not in line:
                ref = _reference(references or {}, str(line["sample_id"]))
                line["box_input"] = ref["box_input"] if ref else [0.0] * 6
        return tm.scan2cap_metrics(lines, scan2cap_unmatched)
    if benchmark == "scanrefer":
        return gm.scanrefer_metrics(lines)
    return gm.multi3drefer_metrics(lines)


def write_metrics(metrics: dict, path: str | Path) -> None:
    """METRICS.json and metrics.csv (one header row, one value row) side by side."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2))
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(clean))
        writer.writerow(list(clean.values()))
