"""Answer files and scoring: read/write answer lines in the original release's jsonl format, gather references
(from our samples.parquet or the original's llava-style question JSON) and dispatch to the benchmark's metrics;
METRICS.json is a flat object of percentages (plus counts) with a CSV beside it."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from ross3d.errors import InputError

log = logging.getLogger(__name__)
BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")
GROUNDING = ("scanrefer", "multi3drefer")
# the split each benchmark reports (docs/original-data.md A.0): SQA3D its test split, the others val
BENCHMARK_SPLITS = {"scanqa": "val", "sqa3d": "test", "scan2cap": "val", "scanrefer": "val", "multi3drefer": "val"}


def read_answers(path: str | Path) -> list[dict]:
    """The answer lines of a jsonl answers file (ours or the original release's), blank lines skipped."""
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
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    except OSError as err:
        raise InputError(path, f"cannot read answers file ({err.strerror})") from None
    missing = [k for k in ("sample_id", "gt_response") if lines and isinstance(lines[0], dict) and k not in lines[0]]
    if missing:
        raise InputError(path, f"answer lines lack {missing} (not the original's answer format)")
    return lines


def write_answers(path: str | Path, lines: list[dict]) -> None:
    """One JSON object per line, in the given order (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def object_boxes(path: str | Path) -> dict[tuple[str, int], list[float]]:
    """(scene_id, object_id) -> GT box [cx, cy, cz, dx, dy, dz] from PREP_DIR/objects.parquet."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "objects.parquet not found (it holds the GT boxes of the grounding benchmarks)")
    table = pq.read_table(path, columns=["scene_id", "object_id", "box"])
    return {(scene, int(obj)): [float(v) for v in box] for scene, obj, box in
            zip(*(table[c].to_pylist() for c in ("scene_id", "object_id", "box")))}


def references_from_samples(path: str | Path, benchmark: str, split: str | None = None) -> dict[str, dict]:
    """sample_id -> {answers, box_input, question_type} of the benchmark's samples of `split` (default: the split it
    reports, BENCHMARK_SPLITS) in PREP_DIR/samples.parquet; for the grounding benchmarks also gt_boxes, the samples'
    target objects' boxes from objects.parquet beside it."""
    from ross3d.prep.qa.schema import read_samples

    samples = read_samples(path, tasks=[benchmark], splits=[split or BENCHMARK_SPLITS[benchmark]])
    boxes = object_boxes(Path(path).with_name("objects.parquet")) if benchmark in GROUNDING else {}
    refs = {}
    for s in samples:
        refs[s.sample_id] = {"answers": list(s.answers), "box_input": s.box_input, "question_type": s.question_type}
        if benchmark in GROUNDING:
            missing = [i for i in s.object_ids if (s.scene_id, int(i)) not in boxes]
            if missing:
                raise InputError(Path(path).with_name("objects.parquet"),
                                 f"no object {missing[0]} of {s.scene_id} (sample {s.sample_id})")
            refs[s.sample_id]["gt_boxes"] = [boxes[(s.scene_id, int(i))] for i in s.object_ids]
    return refs


def references_from_questions(path: str | Path) -> dict[str, dict]:
    """id -> {answers, box_input, question_type} from the original's llava-style question JSON (an array)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read question file ({err})") from None
    if not isinstance(records, list):
        raise InputError(path, "a question file is a JSON array of llava-style records")
    refs = {}
    for number, rec in enumerate(records):
        try:
            metadata = rec.get("metadata") or {}
            answers = metadata.get("answers") or rec.get("annotations") or [rec["conversations"][1]["value"]]
            refs[str(rec["id"])] = {"answers": list(answers), "box_input": rec.get("box_input"),
                                    "question_type": metadata.get("question_type")}
        except (AttributeError, KeyError, IndexError, TypeError):
            raise InputError(path, f"record {number} lacks id, metadata.answers/annotations or a gpt turn") from None
    return refs


REQUIRED_KEYS = {"multi3drefer": ("sample_id", "scores", "objects", "gt_response")}
TEXT_KEYS = ("sample_id", "pred_response", "gt_response")


def _line_problem(benchmark: str, line: object) -> str | None:
    """What makes one answer line unusable for the benchmark, or None."""
    if not isinstance(line, dict):
        return "is not a JSON object"
    missing = [k for k in REQUIRED_KEYS.get(benchmark, TEXT_KEYS) if k not in line]
    if missing:
        return f"lacks {', '.join(missing)}"
    if isinstance(line["sample_id"], bool) or not isinstance(line["sample_id"], (str, int)):
        return "has a sample_id that is not a string or an integer"
    try:
        if benchmark == "scanrefer":
            np.asarray(line["pred_response"], np.float64).reshape(6)
            np.asarray(line["gt_response"], np.float64).reshape(6)
        elif benchmark == "multi3drefer":
            objects = np.asarray(line["objects"], np.float64).reshape(-1, 6)
            np.asarray(line["gt_response"], np.float64).reshape(-1, 6)
            if np.asarray(line["scores"], np.float64).shape != (len(objects) + 1,):
                return f"has {len(line['scores'])} scores for {len(objects)} objects (needs objects + 1)"
        elif benchmark in ("scanqa", "sqa3d", "scan2cap"):
            gts = line["gt_response"] if benchmark == "scan2cap" else [line["gt_response"]]
            if not isinstance(line["pred_response"], str) or not isinstance(gts, list) or \
                    not all(isinstance(g, str) for g in gts):
                return "needs a text pred_response and " + (
                    "a list of caption strings as gt_response" if benchmark == "scan2cap" else "gt_response")
    except (TypeError, ValueError):
        return "has boxes that are not [cx, cy, cz, dx, dy, dz]"
    return None


def check_lines(benchmark: str, lines: list, source: str | Path) -> None:
    """Raise InputError naming the first answer line (1-based) the benchmark cannot score, or that repeats the
    sample_id of an earlier line (a duplicated answer would count twice)."""
    first: dict[object, int] = {}
    for number, line in enumerate(lines, start=1):
        problem = _line_problem(benchmark, line)
        if problem:
            raise InputError(source, f"{benchmark} answer line {number} {problem}")
        seen = first.setdefault(line["sample_id"], number)
        if seen != number:
            raise InputError(source, f"{benchmark} answer line {number} repeats sample_id {line['sample_id']!r} "
                                     f"of line {seen}")


def coverage(lines: list[dict], references: dict[str, dict]) -> tuple[int, int, list[str]]:
    """(answered, expected, missing ids): how many of the references' samples the answer lines cover, and the ids of
    the references no line answers (in the references' order)."""
    answered = {id(_reference(references, str(line["sample_id"]))) for line in lines} - {id(None)}
    missing = [key for key, ref in references.items() if id(ref) not in answered]
    return len(references) - len(missing), len(references), missing


def _reference(refs: dict[str, dict], sample_id: str) -> dict | None:
    """Exact id, else the original evaluator's normalisation of ScanQA ids to end in `_0`."""
    for key in (sample_id, f"{sample_id}_0", f"{sample_id.rsplit('_', 1)[0]}_0"):
        if key in refs:
            return refs[key]
    return None


def _with_references(benchmark: str, lines: list[dict], references: dict[str, dict] | None) -> list[dict]:
    """Copies of the lines with what the references add: ScanQA's full answer list, Scan2Cap's box_input,
    a missing question_type, and with samples the grounding GT boxes from objects.parquet."""
    if not references:
        return [dict(line) for line in lines]
    out, missing = [], []
    for line in lines:
        ref = _reference(references, str(line["sample_id"]))
        line = dict(line)
        if ref is None:
            missing.append(str(line["sample_id"]))
        else:
            line["answers"] = ref["answers"]
            if "box_input" in ref:
                line.setdefault("box_input", ref["box_input"])
            line["question_type"] = line.get("question_type") or ref.get("question_type")
            if "gt_boxes" in ref:
                line["gt_response"] = ref["gt_boxes"][0] if benchmark == "scanrefer" else ref["gt_boxes"]
        out.append(line)
    if missing:
        raise InputError(missing[0], f"{len(missing)} answer line(s) have no reference among the given "
                                     f"{benchmark} questions/samples (sample_id {missing[0]!r} first)")
    return out


def score(benchmark: str, lines: list[dict], references: dict[str, dict] | None = None,
          scan2cap_unmatched: str = "original") -> dict:
    """Metrics of one benchmark's answer lines (a flat dict of percentages plus `n`). references
    (references_from_questions/references_from_samples) give ScanQA's full answer lists, Scan2Cap's box_input
    (needed by scan2cap_unmatched="m@0.5") and, from samples, the grounding GT boxes; without them each line's
    gt_response is the reference."""
    from ross3d.eval import grounding_metrics as gm
    from ross3d.eval import text_metrics as tm

    if benchmark not in BENCHMARKS:
        raise InputError(benchmark, f"unknown benchmark (choose from {', '.join(BENCHMARKS)})")
    if not lines:
        raise InputError(benchmark, "no answer lines to score")
    check_lines(benchmark, lines, "answers")
    lines = _with_references(benchmark, lines, references)
    if benchmark == "scanqa":
        if not references:
            log.warning("no references given: ScanQA is scored against each line's gt_response only")
        answers = {line["sample_id"]: line.get("answers") or [line["gt_response"]] for line in lines}
        return tm.scanqa_metrics(lines, answers)
    if benchmark == "sqa3d":
        return tm.sqa3d_metrics(lines)
    if benchmark == "scan2cap":
        if scan2cap_unmatched == "m@0.5" and any("box_input" not in line for line in lines):
            raise InputError("scan2cap", "m@0.5 needs each object's box_input: the answer lines lack it, "
                                         "pass --questions or --samples")
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
