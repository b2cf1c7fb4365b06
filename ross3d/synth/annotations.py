"""Benchmark annotations for synthetic scenes, in the real releases' native formats, generated from each scene's
objects so that every answer follows from the scene (colours, counts, nearest objects, left/right relations).

All scenes appear in both the train and the val split lists, with different questions (ScanQA: the same facts
in the other of two phrasings both seen in training; other object pairs; paraphrases): the synthetic benchmark
measures whether a model learns scene content, not generalisation to unseen scenes. Layout under OUT:
benchmarks/{scanqa,sqa_task/balanced,scanrefer,multi3drefer}/ and
scannet_metadata/{scannetv2_train.txt, scannetv2_val.txt, scannetv2-labels.combined.tsv}.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ross3d.synth.labels import COLORS, label_map_tsv
from ross3d.synth.room import SynthObject
from ross3d.synth.scenes import SynthScene

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ABSENT_LABELS = ["piano", "toaster oven", "bathtub"]


def _plural(label: str) -> str:
    return label + ("es" if label.endswith(("x", "s")) else "s")


class SceneFacts:
    """What can be asked about one scene: furniture, label counts, nearest neighbours, relative directions."""

    def __init__(self, scene: SynthScene):
        self.scene_id = scene.scene_id
        self.number = int(scene.scene_id[5:9])
        self.objects = [o for o in scene.room.objects if o.color_name is not None]
        self.counts = Counter(o.label for o in self.objects)
        centres = np.array([o.box[:2] for o in self.objects])
        dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
        self.nearest = {o.object_id: self.objects[int(j)] for o, j in zip(self.objects, dist.argmin(1))}

    @property
    def unique(self) -> list[SynthObject]:
        return [o for o in self.objects if self.counts[o.label] == 1]

    def side(self, at: SynthObject, facing: SynthObject, target: SynthObject) -> str:
        """'left' or 'right' of `target` for someone standing at `at` facing `facing` (z up)."""
        f = facing.box[:2] - at.box[:2]
        t = target.box[:2] - at.box[:2]
        return "left" if f[0] * t[1] - f[1] * t[0] > 0 else "right"


# two phrasings per ScanQA question kind: colour, count, neighbour
SCANQA_PHRASINGS = (("What color is the {l}?", "What is the color of the {l}?"),
                    ("How many {p} are there in the room?", "How many {p} are in this room?"),
                    ("What is next to the {l}?", "What is beside the {l}?"))


def _scanqa(facts: list[SceneFacts], split: str) -> list[dict]:
    """One question per fact and split. Fact j of a scene takes phrasing j % 2 of its kind in train and the other
    in val: train holds both phrasings of every kind, and a val question is a seen fact in a seen phrasing, never a
    (fact, phrasing) pair seen in training."""
    offset = 1 if split == "val" else 0
    records = []
    for sf in facts:
        qas = [(0, o.color_name, [o]) for o in sf.unique]
        qas += [(1, NUMBER_WORDS[n], [o for o in sf.objects if o.label == label]) for label, n in sf.counts.items()]
        qas += [(2, sf.nearest[o.object_id].label, [o]) for o in sf.unique]
        for j, (kind, answer, objs) in enumerate(qas):
            label = objs[0].label
            template = SCANQA_PHRASINGS[kind][(j + offset) % 2]
            records.append({
                "answers": [answer], "object_ids": [o.object_id for o in objs],
                "object_names": [o.label for o in objs],
                "question": template.format(l=label, p=_plural(label)),
                "question_id": f"{split}-scene{sf.number:04d}-{len(records)}", "scene_id": sf.scene_id,
            })
    return records


SQA3D_SITUATIONS = 15  # situations per scene at most, so SQA3D does not outnumber the other tasks' samples
SQA3D_TRAIN_SITUATIONS = 9  # of a scene's SQA3D_SITUATIONS; the others alternate val, test


def _sqa3d_situations(objs: list[SynthObject], rng: np.random.Generator) -> list[tuple[SynthObject, SynthObject, str]]:
    """(standing at A, facing B, split) for up to SQA3D_SITUATIONS random ordered pairs of a scene's unique objects:
    SQA3D_TRAIN_SITUATIONS train ones, then val and test alternately, taking first the pairs that face an object some
    train situation faces, so that the colour a val question asks is a fact seen in training (in another situation)."""
    pairs = [(a, b) for a in objs for b in objs if a is not b]
    order = [pairs[int(k)] for k in rng.permutation(len(pairs))]
    train, rest = order[:SQA3D_TRAIN_SITUATIONS], order[SQA3D_TRAIN_SITUATIONS:]
    faced = {b.object_id for _, b in train}
    held = sorted(rest, key=lambda pair: pair[1].object_id not in faced)[:SQA3D_SITUATIONS - len(train)]  # stable
    return [(a, b, "train") for a, b in train] + [(a, b, ("val", "test")[k % 2]) for k, (a, b) in enumerate(held)]


def _sqa3d(facts: list[SceneFacts], rng: np.random.Generator) -> dict[str, tuple[list, list]]:
    """SQA3D questions and annotations per split; situations are (standing at A, facing B) pairs
    (`_sqa3d_situations`)."""
    out = {split: ([], []) for split in ("train", "val", "test")}
    qid = 220602000000
    for sf in facts:
        objs = sf.unique
        for a, b, split in _sqa3d_situations(objs, rng):
            others = [o for o in objs if o is not a and o is not b]
            situation = f"I am standing next to the {a.label} and facing the {b.label}."
            alternatives = [f"I stand beside the {a.label}, looking at the {b.label}.",
                            f"The {b.label} is in front of me and the {a.label} is beside me."]
            qas = [(f"What color is the {b.label} in front of me?", b.color_name)]
            if others:
                c = others[int(rng.integers(len(others)))]
                qas.append((f"Is the {c.label} on my left or my right?", sf.side(a, b, c)))
            for question, answer in qas:
                qid += 1
                out[split][0].append({"question_id": qid, "question": question, "situation": situation,
                                      "alternative_situation": alternatives, "scene_id": sf.scene_id})
                x, y = (float(v) for v in a.box[:2])
                out[split][1].append({
                    "question_id": qid, "scene_id": sf.scene_id, "answer_type": "other", "question_type": "N/A",
                    "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": 1}],
                    "position": {"x": x, "y": y, "z": 0.0}, "rotation": {"_x": 0.0, "_y": 0.0, "_z": 0.0, "_w": 1.0},
                })
    return out


SCANREFER_TEMPLATES = ("this is a {c} {l}. it is next to the {n}.", "a {c} {l} near the {n}.",
                       "there is a {c} {l} close to the {n}.")


def _scanrefer(facts: list[SceneFacts], split: str) -> list[dict]:
    """Object j of a scene is described with template j % 3 in val and with the two others in train: every
    template occurs in train, never with the val object it describes there."""
    records = []
    for sf in facts:
        for j, o in enumerate(sf.objects):
            held = j % len(SCANREFER_TEMPLATES)
            chosen = [held] if split == "val" else [k for k in range(len(SCANREFER_TEMPLATES)) if k != held]
            for ann, k in enumerate(chosen):
                text = SCANREFER_TEMPLATES[k].format(c=o.color_name, l=o.label, n=sf.nearest[o.object_id].label)
                records.append({"scene_id": sf.scene_id, "object_id": str(o.object_id),
                                "object_name": o.label.replace(" ", "_"), "ann_id": str(ann), "description": text,
                                "token": text.replace(".", " .").split()})
    return records


def _multi3drefer(facts: list[SceneFacts], split: str) -> list[dict]:
    """Every query has two phrasings; query j of a scene takes phrasing j % 2 in train and the other in val, so
    train holds both phrasings of every query type."""
    offset = 0 if split == "train" else 1
    records = []
    for sf in facts:
        entries = []
        for o in sf.unique:
            entries.append((("the {l} in the room.", "the only {l} here."), dict(l=o.label),
                            [o.object_id], "st_wo_d", o.label, False))
        for label, n in sf.counts.items():
            group = [o for o in sf.objects if o.label == label]
            if n > 1:
                entries.append((("all the {p} in the room.", "every {l} in this room."),
                                dict(p=_plural(label), l=label), [o.object_id for o in group], "mt", label, False))
                colors = Counter(o.color_name for o in group)
                for o in group:
                    if colors[o.color_name] == 1:
                        entries.append((("the {c} {l}.", "the {l} that is {c}."), dict(c=o.color_name, l=label),
                                        [o.object_id], "st_w_d", label, True))
        # one zero-target query of each kind per scene, near the release's share of empty answers (docs/demo.md,
        # Multi3DRefer's zero targets): a colour no object of a present label has, and a label the scene lacks
        label = list(sf.counts)[sf.number % len(sf.counts)]
        absent = next(c for c in COLORS if c not in {o.color_name for o in sf.objects if o.label == label})
        entries.append((("the {c} {l}.", "the {l} that is {c}."), dict(c=absent, l=label), [], "zt_w_d", label, True))
        missing = next(label for label in ABSENT_LABELS if label not in sf.counts)
        entries.append((("the {l} in the room.", "the only {l} here."), dict(l=missing), [], "zt_wo_d",
                        missing, False))
        for j, (phrasings, fields, ids, eval_type, label, by_color) in enumerate(entries):
            records.append({"scene_id": sf.scene_id, "object_name": label.replace(" ", "_"), "ann_id": len(records),
                            "description": phrasings[(j + offset) % 2].format(**fields), "object_ids": ids,
                            "eval_type": eval_type, "spatial": False, "color": by_color, "texture": False,
                            "shape": False})
    return records


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def write_annotations(out_dir: str | Path, scenes: list[SynthScene], seed: int) -> None:
    out = Path(out_dir)
    facts = [SceneFacts(s) for s in scenes]
    bench = out / "benchmarks"
    for split in ("train", "val"):
        _dump(bench / "scanqa" / f"ScanQA_v1.0_{split}.json", _scanqa(facts, split))
        _dump(bench / "scanrefer" / f"ScanRefer_filtered_{split}.json", _scanrefer(facts, split))
        _dump(bench / "multi3drefer" / f"multi3drefer_{split}.json", _multi3drefer(facts, split))
    for split, (questions, annotations) in _sqa3d(facts, np.random.default_rng([seed, 99])).items():
        balanced = bench / "sqa_task" / "balanced"
        _dump(balanced / f"v1_balanced_questions_{split}_scannetv2.json", {"questions": questions})
        _dump(balanced / f"v1_balanced_sqa_annotations_{split}_scannetv2.json", {"annotations": annotations})
    meta = out / "scannet_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    scene_list = "\n".join(s.scene_id for s in scenes) + "\n"
    (meta / "scannetv2_train.txt").write_text(scene_list)
    (meta / "scannetv2_val.txt").write_text(scene_list)
    (meta / "scannetv2-labels.combined.tsv").write_text(label_map_tsv())
