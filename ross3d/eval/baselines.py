"""Trivial baselines scored exactly like a model: the most frequent training answer (text tasks) and a random
candidate / random scores (grounding), over the same evaluation samples and candidates as `ross3d eval run`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ross3d.eval.scoring import BENCHMARK_SPLITS, object_boxes, score

# The number each benchmark is judged by when comparing a model with its baseline.
HEADLINE = {"scanqa": "EM", "sqa3d": "EM", "scan2cap": "CIDEr", "scanrefer": "all/Acc@0.25",
            "multi3drefer": "all/F1@0.25"}


def _candidates(prep_dir: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    from ross3d.eval.proposals import ProposalSource

    source = ProposalSource(prep_dir, "uniform")
    table = pq.read_table(prep_dir / "objects.parquet", columns=["scene_id", "box"])
    scenes = sorted(set(table["scene_id"].to_pylist()))
    if source.available:
        return {s: source.boxes(s) for s in scenes}
    boxes = np.asarray(table["box"].to_pylist(), np.float32)
    ids = np.asarray(table["scene_id"].to_pylist())
    return {s: boxes[(ids == s) & np.isfinite(boxes).all(1)] for s in scenes}


def baseline_metrics(prep_dir: str | Path, benchmark: str, seed: int = 0, limit: int | None = None,
                     draws: int = 20) -> dict:
    """Metrics of the benchmark's trivial baseline on its standard split (first `limit` samples, sorted by scene
    as the runner orders them); random baselines report the mean over `draws` seeded draws."""
    from ross3d.prep.qa.schema import read_samples

    prep_dir = Path(prep_dir)
    rows = sorted(read_samples(prep_dir / "samples.parquet", tasks=[benchmark],
                               splits=[BENCHMARK_SPLITS[benchmark]]), key=lambda r: r.scene_id)
    rows = rows[:limit] if limit else rows
    refs = {r.sample_id: {"answers": list(r.answers), "box_input": r.box_input} for r in rows}
    rng = np.random.default_rng(seed)
    if benchmark in ("scanqa", "sqa3d", "scan2cap"):
        train = read_samples(prep_dir / "samples.parquet", tasks=[benchmark], splits=["train"])
        common = Counter(r.conversations[-1][1] for r in train).most_common(1)[0][0]
        lines = [{"sample_id": r.sample_id, "pred_response": common, "question_type": r.question_type,
                  "gt_response": list(r.answers) if benchmark == "scan2cap" else r.answers[0],
                  "box_input": r.box_input} for r in rows]
        return score(benchmark, lines, refs)
    gt = object_boxes(prep_dir / "objects.parquet")
    candidates = _candidates(prep_dir)
    runs = [score(benchmark, _random_lines(benchmark, rows, candidates, gt, rng), refs) for _ in range(draws)]
    return {k: (float(np.mean([r[k] for r in runs])) if isinstance(runs[0][k], float) else runs[0][k])
            for k in runs[0]}


def _random_lines(benchmark: str, rows: list, candidates: dict, gt: dict, rng: np.random.Generator) -> list[dict]:
    """A random candidate (ScanRefer) or uniform random scores over the candidates and the zero target."""
    lines = []
    for r in rows:
        boxes = candidates[r.scene_id]
        line = {"sample_id": r.sample_id, "question_type": r.question_type,
                "gt_response": [gt[(r.scene_id, o)] for o in r.object_ids]}
        if benchmark == "scanrefer":
            line.update(pred_response=boxes[rng.integers(len(boxes))].tolist(), gt_response=line["gt_response"][0])
        else:
            line.update(scores=rng.uniform(-1, 1, len(boxes) + 1).tolist(), objects=boxes.tolist())
        lines.append(line)
    return lines
