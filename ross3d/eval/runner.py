"""`ross3d eval run`: a checkpoint on the benchmarks' samples, from cached scene tensors, into answer files in the
original release's jsonl format.

Text tasks (ScanQA, SQA3D, Scan2Cap) are answered by batched greedy generation with the KV cache, prompts built as
the original's evaluation does (raw first turn, no spatial sentence unless asked), up to 512 new tokens with a stop
at `<|im_end|>` / `<|endoftext|>` as the original (a shorter limit cuts Scan2Cap captions and every caption metric).
Grounding tasks (ScanRefer, Multi3DRefer) run one teacher-forced forward over (prompt, `<ground>`) and score the
`<ground>` state against the candidates: imported proposals when PREP_DIR holds proposals.parquet, else the scene's GT
objects (then the result measures grounding with perfect proposals, and the answer file says so in `proposals`).

A benchmark is answered in batches of one scene's samples (one scene read serves them all), each scene's samples
sorted by prompt length so that a batch pads little; `plan` fixes the batches, `answer` answers one, and the answer
order is the samples' order whatever the batching (ross3d.eval.shards spreads the batches over ranks and resumes).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ross3d.batches import GROUNDING_TASKS, SceneCache, TextSample, box_center, collate
from ross3d.chat import ChatEncoder
from ross3d.eval.scoring import BENCHMARK_SPLITS
from ross3d.progress import NullProgress, Progress

DATASET_NAMES = {"scanqa": "scanQA", "sqa3d": "sqa3d", "scan2cap": "scan2cap", "scanrefer": "scanrefer",
                 "multi3drefer": "multi3drefer"}


@dataclass
class EvalOptions:
    strategy: str = "uniform"
    batch_size: int = 8
    max_new_tokens: int = 512
    limit: int | None = None  # first N samples of each benchmark (a quick look)
    split: str | None = None  # default: the benchmark's standard split (BENCHMARK_SPLITS)
    # None: as the checkpoint was trained (config.extra["spatial_instruction"]); the original's evaluation omits the
    # sentence although its training adds it (docs/original-data.md A.0), reproduce that with False
    spatial_instruction: bool | None = None
    device: str | None = None  # None: cuda when available


@dataclass
class Plan:
    """One benchmark's samples in answer order, their encodings, and the batches (lists of sample positions)."""

    rows: list
    encoded: list[TextSample]
    batches: list[list[int]]


class Evaluator:
    """A loaded checkpoint plus the scene cache: `plan` and `answer` a batch (ross3d.eval.shards), or all
    `answers(benchmark)` in one process."""

    def __init__(self, checkpoint: str | Path, cache_dir: str | Path, prep_dir: str | Path, options: EvalOptions):
        from ross3d.cache.encoders import resolve_device
        from ross3d.eval.proposals import ProposalSource
        from ross3d.eval.scoring import object_boxes
        from ross3d.model.checkpoint import load_model
        from ross3d.model.tokenizer import load_tokenizer
        from ross3d.cache.model_sizes import cache_sizes, fit_to_cache

        self.checkpoint, self.options, self.prep_dir = Path(checkpoint), options, Path(prep_dir)
        options.device = str(resolve_device(options.device))
        dtype = torch.bfloat16 if str(options.device).startswith("cuda") else torch.float32
        self.model, _ = load_model(self.checkpoint, dtype=dtype)
        self.model.config = fit_to_cache(self.model.config, cache_sizes(cache_dir, options.strategy),
                                         f"--checkpoint {self.checkpoint}")
        self.model.to(options.device).eval()
        self.tokenizer = load_tokenizer(self.checkpoint)
        self.encoder = ChatEncoder(self.tokenizer, self.model.config.image_token_id)
        if options.spatial_instruction is None:
            options.spatial_instruction = bool(self.model.config.extra.get("spatial_instruction", False))
        self.scenes = SceneCache(str(cache_dir), options.strategy, size=2)
        self.proposals = ProposalSource(prep_dir, options.strategy)
        self._proposal_scene: tuple[str | None, dict] = (None, {})
        stops = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        self.stop_ids = [i for i in stops if i is not None and i != self.tokenizer.unk_token_id]
        self.gt_boxes = object_boxes(self.prep_dir / "objects.parquet")

    def samples(self, benchmark: str) -> list:
        from ross3d.prep.qa.schema import read_samples

        split = self.options.split or BENCHMARK_SPLITS[benchmark]
        rows = read_samples(self.prep_dir / "samples.parquet", tasks=[benchmark], splits=[split])
        rows.sort(key=lambda r: r.scene_id)  # one scene read serves all of its samples
        return rows[: self.options.limit] if self.options.limit else rows

    def _encode(self, row, benchmark: str) -> TextSample:
        """Text tasks: the prompt alone (generation continues it); grounding: the whole (prompt, `<ground>`) turn."""
        if benchmark in GROUNDING_TASKS:
            enc = self.encoder.encode_eval([{"from": r, "value": t} for r, t in row.conversations],
                                           self.options.spatial_instruction)
            return TextSample(row.task, row.scene_id, np.asarray(enc.input_ids, np.int64),
                              np.asarray(enc.labels, np.int64), (), ())
        ids = np.asarray(self.encoder.encode_prompt(row.prompt, self.options.spatial_instruction), np.int64)
        return TextSample(row.task, row.scene_id, ids, np.full_like(ids, -100), (), (box_center(row),))

    def plan(self, benchmark: str) -> Plan:
        """The benchmark's samples, encoded, and batches of at most batch_size positions: per scene in order of
        first appearance, within a scene by prompt length (ties in sample order)."""
        rows = self.samples(benchmark)
        encoded = [self._encode(row, benchmark) for row in rows]
        by_scene = defaultdict(list)
        for position, row in enumerate(rows):
            by_scene[row.scene_id].append(position)
        bs = self.options.batch_size
        batches = []
        for positions in by_scene.values():
            positions = sorted(positions, key=lambda p: len(encoded[p].input_ids))
            batches += [positions[i:i + bs] for i in range(0, len(positions), bs)]
        return Plan(rows, encoded, batches)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.options.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _line(self, row, benchmark: str) -> dict:
        return {"dataset": DATASET_NAMES[benchmark], "video": f"scannet/{row.scene_id}", "sample_id": row.sample_id,
                "prompt": row.prompt, "model_id": self.checkpoint.name, "question_type": row.question_type}

    @torch.no_grad()
    def _text(self, rows: list, samples: list[TextSample], benchmark: str) -> list[dict]:
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
    def _grounding(self, rows: list, samples: list[TextSample], benchmark: str) -> list[dict]:
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

    def answer(self, plan: Plan, batch: list[int], benchmark: str) -> list[dict]:
        """The answer lines of one batch of the plan, in the batch's order."""
        run = self._grounding if benchmark in GROUNDING_TASKS else self._text
        return run([plan.rows[p] for p in batch], [plan.encoded[p] for p in batch], benchmark)

    def answers(self, benchmark: str, progress: Progress = NullProgress()) -> list[dict]:
        """Every answer line of the benchmark in this process, in sample order (no files, no resume)."""
        plan = self.plan(benchmark)
        progress.start(benchmark, len(plan.rows), f"eval {benchmark}", unit="samples")
        lines: list[dict | None] = [None] * len(plan.rows)
        for batch in plan.batches:
            for position, line in zip(batch, self.answer(plan, batch, benchmark)):
                lines[position] = line
            progress.advance(benchmark, len(batch))
        progress.finish(benchmark)
        return lines
