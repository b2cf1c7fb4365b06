"""Metrics of the text benchmarks exactly as the original evaluators (docs/original-data.md A.1-A.3, A.8):
ScanQA (raw-string EM, caption metrics), SQA3D (cleaned EM per question type, EM-R) and Scan2Cap (sos/eos
formatting, the original's scoring of unmatched objects or the standard m@0.5 rule). Caption metrics are
pycocoevalcap's scorers on pre-formatted strings (no PTB tokenizer), x100."""

from __future__ import annotations

import atexit
import contextlib
import functools
import re
import shutil
from collections import defaultdict

import numpy as np

from ross3d.errors import ConfigError, Ross3DError

SQA3D_TYPES = ("what", "is", "how", "can", "which", "others")
SCAN2CAP_UNMATCHED = ("original", "m@0.5")


@functools.lru_cache(maxsize=1)
def _meteor():
    """One METEOR scorer (a JVM subprocess that loads its paraphrase tables once) per process."""
    from pycocoevalcap.meteor.meteor import Meteor

    if shutil.which("java") is None:
        raise Ross3DError("METEOR needs a Java runtime and `java` is not on PATH: "
                          "apt-get install default-jre-headless (make setup does it as root)")
    class _Meteor(Meteor):
        def __del__(self):  # pycocoevalcap's takes a lock a failed request leaves held, and writes to a dead pipe
            _close_meteor(self)

    scorer = _Meteor()
    atexit.register(_close_meteor, scorer)
    return scorer


def _close_meteor(scorer) -> None:
    """Stop the JVM (idempotent, never raises, never takes pycocoevalcap's lock)."""
    process = scorer.meteor_p
    with contextlib.suppress(OSError):
        process.stdin.close()
    if process.poll() is None:
        process.kill()
    process.wait()


def _meteor_scores(gts: dict[str, list[str]], res: dict[str, list[str]]):
    scorer = _meteor()
    try:
        return scorer.compute_score(_one_line(gts), _one_line(res))
    except (ValueError, OSError) as err:  # the JVM died or answered garbage (e.g. it could not reserve -Xmx2G)
        _close_meteor(scorer)
        if scorer.lock.locked():  # pycocoevalcap does not release it on errors; its __del__ would then block
            scorer.lock.release()
        _meteor.cache_clear()
        detail = scorer.meteor_p.stderr.readline().decode(errors="replace").strip() if scorer.meteor_p.stderr else ""
        raise Ross3DError(f"METEOR's Java process failed ({detail or err})") from None


def _one_line(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """METEOR talks to its JVM one line per request: a line break inside a caption would desynchronise it (the
    original hangs or crashes there), so line breaks become spaces for METEOR only."""
    return {k: [c.replace("\r", " ").replace("\n", " ") for c in v] for k, v in captions.items()}


def caption_scores(gts: dict[str, list[str]], res: dict[str, list[str]], per_item: bool = False) -> dict:
    """CIDEr, BLEU-1..4, METEOR, ROUGE-L (x100) of res against gts; with per_item, also per-id score lists."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_items = Cider().compute_score(gts, res)
    meteor, meteor_items = _meteor_scores(gts, res)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    out = {"CIDEr": cider * 100, "METEOR": meteor * 100, "ROUGE-L": rouge * 100}
    out.update({f"BLEU-{n + 1}": b * 100 for n, b in enumerate(bleu)})
    if per_item:
        out["items"] = {"CIDEr": np.asarray(cider_items), "METEOR": np.asarray(meteor_items),
                        "ROUGE-L": np.asarray(rouge_items), "BLEU-4": np.asarray(bleu_items[3])}
    return out


def scanqa_metrics(lines: list[dict], references: dict[str, list[str]]) -> dict:
    """EM@1: the raw prediction is one of the references; caption metrics on `pred.rstrip('.')`."""
    ids = [str(k) for k in range(len(lines))]
    refs = [references[line["sample_id"]] for line in lines]
    em = np.mean([line["pred_response"] in ref for line, ref in zip(lines, refs)]) * 100
    scores = caption_scores(dict(zip(ids, refs)), {i: [line["pred_response"].rstrip(".")] for i, line in
                                                    zip(ids, lines)})
    return {"EM": em, **scores, "n": len(lines)}


_SPELLING = [("ç", "c"), ("’", "'"), (r"\bletf\b", "left"), (r"\blet\b", "left"), (r"\btehre\b", "there"),
             (r"\brigth\b", "right"), (r"\brght\b", "right"), (r"\bbehine\b", "behind"), (r"\btv\b", "TV"),
             (r"\bchai\b", "chair"), (r"\bwasing\b", "washing"), (r"\bwaslked\b", "walked"), (r"\boclock\b", "o'clock"),
             (r"\bo'[ ]+clock\b", "o'clock")]
_NUMBERS = {"0": "zero", "none": "zero", **{str(n): w for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}, "23": "twenty-three"}


def clean_answer(text: str) -> str:
    """The SQA3D evaluator's answer normalisation, rule by rule (docs/original-data.md A.2)."""
    text = re.sub(" {2,}", " ", text.lower().strip(" "))
    text = re.sub(r"\.[ ]{2,}", ". ", text)
    text = re.sub(r"[^a-zA-Z0-9,'\s\-:]+", "", text)
    for pattern, repl in _SPELLING:
        text = re.sub(pattern, repl, text)
    text = re.sub(r"\b(\d+|none)\b", lambda m: _NUMBERS.get(m.group(1), m.group(1)), text)
    text = re.sub(r"\b([a-zA-Z]+)([0-9])\b", r"\1", text)
    for article in ("a", "an", "the"):  # one after the other, one space, a word of letters: "a a x" -> "a x"
        text = re.sub(rf"\b{article}\b ([a-zA-Z]+)", r"\1", text)
    return re.sub(r"\bbackwards\b", "backward", text)


def refined_match(pred: str, gt: str) -> bool:
    """EM-R (the LEO rule): exact match, or either string with all whitespace removed contains the other."""
    p, g = "".join(pred.split()), "".join(gt.split())
    return pred == gt or p in g or g in p


def sqa3d_metrics(lines: list[dict]) -> dict:
    em, refined, per_type = [], [], defaultdict(list)
    for line in lines:
        pred, gt = clean_answer(line["pred_response"]), clean_answer(line["gt_response"])
        em.append(pred == gt)
        refined.append(refined_match(pred, gt))
        per_type[line.get("question_type") or "others"].append(pred == gt)
    out = {"EM": np.mean(em) * 100, "EM-R": np.mean(refined) * 100, "n": len(lines)}
    out.update({f"{t}/EM": np.mean(per_type[t]) * 100 for t in SQA3D_TYPES if per_type[t]})
    return out


def scan2cap_format(text: str) -> str:
    return "sos " + text.replace(".", " . ").replace(",", " , ").lower() + " eos"


def scan2cap_metrics(lines: list[dict], unmatched: str = "original") -> dict:
    """`original`: every object scored like the others (the release); `m@0.5`: per-object scores, zero for objects
    without a proposal of IoU >= 0.5 (`box_input` null), averaged over all objects (the standard Scan2Cap rule)."""
    if unmatched not in SCAN2CAP_UNMATCHED:
        raise ConfigError(f"unknown Scan2Cap unmatched policy {unmatched!r} (choose from {SCAN2CAP_UNMATCHED})")
    ids = [str(k) for k in range(len(lines))]
    gts = {i: [scan2cap_format(r) for r in line["gt_response"]] for i, line in zip(ids, lines)}
    res = {i: [scan2cap_format(line["pred_response"])] for i, line in zip(ids, lines)}
    scores = caption_scores(gts, res, per_item=unmatched == "m@0.5")
    matched = np.array([line.get("box_input") is not None for line in lines])
    out = {"n": len(lines), "matched": int(matched.sum())}
    if unmatched == "original":
        return {**{k: v for k, v in scores.items() if k != "items"}, **out}
    return {**{f"{k}@0.5": float((v * matched).mean() * 100) for k, v in scores["items"].items()}, **out}
