"""The trivial baselines on hand-made PREP_DIRs, against values worked out by hand: the most frequent training
answer (ScanQA EM), and a random candidate among the scene's objects (ScanRefer Acc@0.25 / Acc@0.5)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ross3d.eval.baselines import baseline_metrics
from ross3d.prep.qa.schema import Sample, write_samples


def _qa(task: str, split: str, k: int, scene: str, answer: str, references: list[str] | None = None,
        object_ids: list[int] | None = None) -> Sample:
    return Sample(f"{task}/{split}/{k}", split, task, scene, [("human", f"question {k}"), ("gpt", answer)],
                  references or [answer], object_ids or [], None, "unique" if task == "scanrefer" else None)


def _objects(path, rows: list[tuple[str, int, list[float]]]) -> None:
    pq.write_table(pa.table({"scene_id": [r[0] for r in rows], "object_id": pa.array([r[1] for r in rows],
                                                                                      pa.int32()),
                             "box": pa.array([r[2] for r in rows], pa.list_(pa.float32()))}), path)


def test_scanqa_baseline_answers_the_most_frequent_training_answer(tmp_path):
    train = [_qa("scanqa", "train", k, "scene0000_00", a) for k, a in enumerate(["chair", "table", "chair", "sofa"])]
    val = [_qa("scanqa", "val", 10, "scene0001_00", "chair"), _qa("scanqa", "val", 11, "scene0001_00", "lamp"),
           _qa("scanqa", "val", 12, "scene0001_00", "the chair", references=["a chair", "chair"]),
           _qa("scanqa", "val", 13, "scene0001_00", "table")]
    write_samples(tmp_path / "samples.parquet", train + val)
    _objects(tmp_path / "objects.parquet", [("scene0001_00", 0, [0, 0, 0, 1, 1, 1])])
    # "chair" is the answer everywhere: it is among the references of val 10 and val 12 -> 2 of 4
    assert baseline_metrics(tmp_path, "scanqa")["EM"] == pytest.approx(50.0)


def test_scanrefer_random_candidate_accuracy(tmp_path):
    # scene A: one object, the target -> always right. scene B: the target (a unit cube) and a cube shifted by half
    # its side (IoU with the target (0.5 x 1 x 1) / (2 - 0.5) = 1/3): right at 0.25 either way, at 0.5 half the time
    cube, shifted = [0, 0, 0, 1, 1, 1], [0.5, 0, 0, 1, 1, 1]
    _objects(tmp_path / "objects.parquet", [("scene0000_00", 0, cube), ("scene0001_00", 0, cube),
                                            ("scene0001_00", 1, shifted)])
    rows = [_qa("scanrefer", "val", 0, "scene0000_00", "<ground>", object_ids=[0])]
    rows += [_qa("scanrefer", "val", k, "scene0001_00", "<ground>", object_ids=[0]) for k in range(1, 101)]
    write_samples(tmp_path / "samples.parquet", rows)
    metrics = baseline_metrics(tmp_path, "scanrefer", draws=20)
    assert metrics["n"] == 101 and metrics["all/Acc@0.25"] == pytest.approx(100.0)
    # 1 sure hit plus 100 fair coin flips per draw, 20 draws: mean (1 + 50) / 101 = 50.5%, std of the mean
    # 100 * sqrt(0.25 / 2000) / 1.01 = 1.1 points; 5 sigma
    assert metrics["all/Acc@0.5"] == pytest.approx(100 * 51 / 101, abs=5.5)
