"""`ross3d eval run`: a checkpoint on the benchmarks' samples, from cached scene tensors, into answer files in the
original release's jsonl format.

Text tasks (ScanQA, SQA3D, Scan2Cap) are answered by batched greedy generation with the KV cache, prompts built as
the original's evaluation does (raw first turn, no spatial sentence unless asked). Grounding tasks (ScanRefer,
Multi3DRefer) run one teacher-forced forward over (prompt, `<ground>`) and score the `<ground>` state against the
candidates: imported proposals when PREP_DIR holds proposals.parquet, else the scene's GT objects (then the result
measures grounding with perfect proposals, and the answer file says so in `proposals`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ross3d.chat import ChatEncoder
from ross3d.progress import NullProgress, Progress
from ross3d.train.data import GROUNDING_TASKS, SceneCache, TextSample, collate

DATASET_NAMES = {"scanqa": "scanQA", "sqa3d": "sqa3d", "scan2cap": "scan2cap", "scanrefer": "scanrefer",
                 "multi3drefer": "multi3drefer"}
BENCHMARK_SPLITS = {"scanqa": "val", "sqa3d": "test", "scan2cap": "val", "scanrefer": "val", "multi3drefer": "val"}


@dataclass
class EvalOptions:
    strategy: str = "uniform"
    batch_size: int = 8
    max_new_tokens: int = 32
    limit: int | None = None  # first N samples of each benchmark (a quick look)
    split: str | None = None  # default: the benchmark's standard split (BENCHMARK_SPLITS)
    # None: as the checkpoint was trained (config.extra["spatial_instruction"]); the original's evaluation omits the
    # sentence although its training adds it (docs/original-data.md A.0), reproduce that with False
    spatial_instruction: bool | None = None
    device: str = "cpu"


class Evaluator:
    """A loaded checkpoint plus the scene cache; `answers(benchmark)` returns answer lines."""

    def __init__(self, checkpoint: str | Path, cache_dir: str | Path, prep_dir: str | Path, options: EvalOptions):
        from transformers import PreTrainedTokenizerFast

        from ross3d.eval.proposals import ProposalSource
        from ross3d.eval.scoring import object_boxes
        from ross3d.model.checkpoint import load_model

        self.checkpoint, self.options, self.prep_dir = Path(checkpoint), options, Path(prep_dir)
        self.model, _ = load_model(self.checkpoint)
        self.model.to(options.device).eval()
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(self.checkpoint)
        self.encoder = ChatEncoder(self.tokenizer, self.model.config.image_token_id)
        if options.spatial_instruction is None:
            options.spatial_instruction = bool(self.model.config.extra.get("spatial_instruction", False))
        self.scenes = SceneCache(str(cache_dir), options.strategy, size=2)
        self.proposals = ProposalSource(prep_dir, options.strategy)
        self._proposal_scene: tuple[str | None, dict] = (None, {})
        self.stop_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        self.gt_boxes = object_boxes(self.prep_dir / "objects.parquet")

    def samples(self, benchmark: str) -> list:
        from ross3d.prep.qa.schema import read_samples

        split = self.options.split or BENCHMARK_SPLITS[benchmark]
        rows = read_samples(self.prep_dir / "samples.parquet", tasks=[benchmark], splits=[split])
        rows.sort(key=lambda r: r.scene_id)  # one scene read serves all of its samples
        return rows[: self.options.limit] if self.options.limit else rows

    def _batches(self, rows: list) -> list[list]:
        by_scene = defaultdict(list)
        for row in rows:
            by_scene[row.scene_id].append(row)
        bs = self.options.batch_size
        return [group[i:i + bs] for group in by_scene.values() for i in range(0, len(group), bs)]

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.options.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _line(self, row, benchmark: str) -> dict:
        return {"dataset": DATASET_NAMES[benchmark], "video": f"scannet/{row.scene_id}", "sample_id": row.sample_id,
                "prompt": row.prompt, "model_id": self.checkpoint.name, "question_type": row.question_type}

    @torch.no_grad()
    def _text(self, rows: list, benchmark: str) -> list[dict]:
        samples = []
        for row in rows:
            ids = np.asarray(self.encoder.encode_prompt(row.prompt, self.options.spatial_instruction), np.int64)
            box = None if row.box_input is None else tuple(float(v) for v in row.box_input[:3])
            samples.append(TextSample(row.task, row.scene_id, ids, np.full_like(ids, -100), (), box))
        scene = self.scenes.get(rows[0].scene_id)
        batch = self._to_device(collate(samples, [scene] * len(samples), self.tokenizer.pad_token_id or 0))
        outputs = self.model.generate(batch, self.options.max_new_tokens, self.stop_ids,
                                      self.tokenizer.pad_token_id or 0)
        lines = []
        for row, out in zip(rows, outputs):
            line = self._line(row, benchmark)
            line["pred_response"] = self.tokenizer.decode(out, skip_special_tokens=True).strip()
            line["gt_response"] = list(row.answers) if benchmark == "scan2cap" else row.answers[0]
            if benchmark == "scan2cap":
                line["scene"] = row.scene_id
                line["box_input"] = row.box_input
            lines.append(line)
        return lines

    def _candidates(self, scene_id: str) -> tuple[dict, str]:
        """The scene's arrays with its grounding candidates; proposal membership is computed once per scene."""
        scene = self.scenes.get(scene_id)
        if not self.proposals.available:
            return scene, "gt"
        if self._proposal_scene[0] != scene_id:
            boxes = self.proposals.boxes(scene_id)
            self._proposal_scene = (scene_id, {
                "objects/boxes": boxes, "objects/object_ids": np.arange(len(boxes), dtype=np.int32),
                "objects/membership": self.proposals.membership(scene_id, boxes)})
        return {**scene, **self._proposal_scene[1]}, "proposals"

    @torch.no_grad()
    def _grounding(self, rows: list, benchmark: str) -> list[dict]:
        samples = []
        for row in rows:
            enc = self.encoder.encode([{"from": r, "value": t} for r, t in row.conversations],
                                      self.options.spatial_instruction)
            samples.append(TextSample(row.task, row.scene_id, np.asarray(enc.input_ids, np.int64),
                                      np.asarray(enc.labels, np.int64), (), None))
        scene, source = self._candidates(rows[0].scene_id)
        batch = self._to_device(collate(samples, [scene] * len(samples), self.tokenizer.pad_token_id or 0))
        scores = self.model.ground_scores(batch)
        valid = np.isfinite(scene["objects/boxes"]).all(1)
        boxes = scene["objects/boxes"][valid].astype(float).tolist()
        lines = []
        for row, s in zip(rows, scores):
            s = s.float().cpu().numpy()
            line = self._line(row, benchmark)
            gt = [self.gt_boxes[(row.scene_id, int(o))] for o in row.object_ids]
            line["proposals"] = source
            if benchmark == "scanrefer":  # the zero target is never the answer (docs/original-data.md A.4)
                line["pred_response"] = boxes[int(np.argmax(s[:-1]))] if boxes else [0.0] * 6
                line["gt_response"] = gt[0]
            else:
                line.update(scores=s.tolist(), objects=boxes, gt_response=gt)
            lines.append(line)
        return lines

    def answers(self, benchmark: str, progress: Progress = NullProgress()) -> list[dict]:
        rows = self.samples(benchmark)
        progress.start(benchmark, len(rows), f"eval {benchmark}", unit="samples")
        run = self._grounding if benchmark in GROUNDING_TASKS else self._text
        lines = []
        for group in self._batches(rows):
            lines += run(group, benchmark)
            progress.advance(benchmark, len(group))
        progress.finish(benchmark)
        return lines
