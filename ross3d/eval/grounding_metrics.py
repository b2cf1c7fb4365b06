"""Metrics of the grounding benchmarks as the original evaluators (docs/original-data.md A.4-A.6): ScanRefer
Acc@0.25/0.5 for unique, multiple and all (as percentages, without the original's CSV bug), and Multi3DRefer's
box-set prediction (softmax(s / 0.07), cumulative 0.4, zero-target rule) with Hungarian F1 per type and overall."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment

from ross3d.boxes import pairwise_iou

THRESHOLDS = (0.25, 0.5)
MULTI3DREFER_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


def scanrefer_metrics(lines: list[dict]) -> dict:
    groups = defaultdict(list)
    for line in lines:
        iou = float(pairwise_iou(line["pred_response"], line["gt_response"])[0, 0])
        for group in ("all", line.get("question_type")):
            if group in ("all", "unique", "multiple"):
                groups[group].append(iou)
    out = {"n": len(lines)}
    for group in ("unique", "multiple", "all"):
        if groups[group]:
            ious = np.asarray(groups[group])
            out.update({f"{group}/Acc@{t}": float((ious >= t).mean() * 100) for t in THRESHOLDS})
    return out


def select_boxes(scores: np.ndarray, boxes: np.ndarray, temperature: float = 0.07, threshold: float = 0.4
                 ) -> np.ndarray:
    """The predicted box set: empty when the zero target (last score) wins; otherwise boxes by descending
    softmax(scores / T) (over all N+1 entries) until their cumulative probability reaches the threshold."""
    scores = np.asarray(scores, np.float64)
    if len(boxes) == 0 or int(np.argmax(scores)) == len(scores) - 1:
        return np.zeros((0, 6))
    p = np.exp((scores - scores.max()) / temperature)
    p = (p / p.sum())[:-1]
    order = np.argsort(-p, kind="stable")
    n = int(np.searchsorted(np.cumsum(p[order]), threshold) + 1)
    return np.asarray(boxes, np.float64)[order[:min(n, len(order))]]


def set_f1(pred: np.ndarray, gt: np.ndarray) -> dict[float, float]:
    """F1@k of a predicted box set against a GT set: Hungarian matching maximising IoU on the zero-padded square
    matrix, TP@k = matched pairs with IoU >= k, F1 = 2 TP / (P + G); both empty -> 1, one empty -> 0. The matrix
    is float32 as in the original (M3DRef-CLIP's evaluator), so an IoU a few 1e-9 below k rounds up to k."""
    pred, gt = np.asarray(pred).reshape(-1, 6), np.asarray(gt).reshape(-1, 6)
    if len(pred) == 0 and len(gt) == 0:
        return {t: 1.0 for t in THRESHOLDS}
    if len(pred) == 0 or len(gt) == 0:
        return {t: 0.0 for t in THRESHOLDS}
    size = max(len(pred), len(gt))
    iou = np.zeros((size, size), np.float32)
    iou[:len(pred), :len(gt)] = pairwise_iou(pred, gt)
    rows, cols = linear_sum_assignment(-iou)
    matched = iou[rows, cols]
    return {t: 2 * float((matched >= t).sum()) / (len(pred) + len(gt)) for t in THRESHOLDS}


def multi3drefer_metrics(lines: list[dict]) -> dict:
    groups = defaultdict(list)
    for line in lines:
        pred = select_boxes(np.asarray(line["scores"]), np.asarray(line["objects"]).reshape(-1, 6))
        f1 = set_f1(pred, np.asarray(line["gt_response"]).reshape(-1, 6))
        groups["all"].append(f1)
        groups[line.get("question_type")].append(f1)
    out = {"n": len(lines)}
    for group in (*MULTI3DREFER_TYPES, "all"):
        if groups[group]:
            out.update({f"{group}/F1@{t}": float(np.mean([f[t] for f in groups[group]]) * 100) for t in THRESHOLDS})
    return out
