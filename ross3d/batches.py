"""Batches from cached scenes, shared by the trainer, eval and visualize: the tokenised sample (`TextSample`, one
samples.parquet row or several of one scene as a multi-turn conversation), the per-process scene LRU over a
CACHE_DIR (`SceneCache`, first read of a scene checked) and `collate`, which stacks the cached arrays and pads the
text into the model's batch format (docs/model.md). Plain numpy/torch: nothing here knows
about DeepSpeed, loaders or evaluation.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ross3d.chat import IMAGE_MARKER, ChatEncoder
from ross3d.prep.qa.schema import VISION_ONLY, Sample

GROUNDING_TASKS = ("scanrefer", "multi3drefer")


@dataclass(frozen=True)
class TextSample:
    """One tokenised sample (training or evaluation) and the per-sample fields the collator needs. `targets` holds
    one tuple of object ids per row the sample was made of, in text order: the positives of its `<ground>` queries
    when it grounds; `box_centers` one box centre (or None) per row: the position of its `<coord>` token."""

    task: str
    scene_id: str
    input_ids: np.ndarray
    labels: np.ndarray
    targets: tuple[tuple[int, ...], ...]
    box_centers: tuple[tuple[float, float, float] | None, ...]


def encode_row(row: Sample, encoder: ChatEncoder, spatial_instruction: bool) -> TextSample:
    """A samples.parquet row tokenised with the Qwen chat template; a vision-only row is the image alone."""
    return encode_rows([row], encoder, spatial_instruction)


def encode_rows(rows: Sequence[Sample], encoder: ChatEncoder, spatial_instruction: bool) -> TextSample:
    """Rows of one scene and task tokenised as one multi-turn conversation (`data.pack_turns`): the first row's
    turns as they are, then each further row's turns with its `<image>` marker dropped, so the visual tokens come
    once, before the first question. One row is `encode_row`'s sample."""
    first = rows[0]
    if any(r.scene_id != first.scene_id or r.task != first.task for r in rows):
        raise ValueError(f"a packed sample mixes scenes or tasks: {sorted({(r.scene_id, r.task) for r in rows})}")
    if first.task == VISION_ONLY:
        if len(rows) > 1:
            raise ValueError("vision-only rows are not packed")
        enc = encoder.encode_vision_only(spatial_instruction)
    else:
        turns = [{"from": r, "value": t if k == 0 else t.replace(IMAGE_MARKER, "").strip()}
                 for k, row in enumerate(rows) for r, t in row.conversations]
        enc = encoder.encode(turns, spatial_instruction)
    return TextSample(first.task, first.scene_id, np.asarray(enc.input_ids, np.int64),
                      np.asarray(enc.labels, np.int64), tuple(tuple(int(i) for i in r.object_ids) for r in rows),
                      tuple(box_center(r) for r in rows))


def box_center(row: Sample) -> tuple[float, float, float] | None:
    """The centre of a row's input box (Scan2Cap's `<coord>`), None without one."""
    return None if row.box_input is None else tuple(float(v) for v in row.box_input[:3])


class SceneCache:
    """The last `size` scene blocks read from the cache (LRU); one read per scene while its samples follow. The
    first read of each scene in the run, by whichever process, checks its checksums and finite values
    (CacheReader `check`; the flags live in shared memory the forked loader workers inherit)."""

    def __init__(self, cache_dir: str, strategy: str, size: int, scene_ids: Sequence[str] = ()):
        self.cache_dir, self.strategy, self.size = cache_dir, strategy, size
        self._reader = None
        self._scenes: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        # one flag per scene in memory shared with the forked loader workers: a scene is checked once per run
        self._slot = {sid: i for i, sid in enumerate(sorted(set(scene_ids)))}
        self._checked = multiprocessing.RawArray(ctypes.c_bool, max(1, len(self._slot)))
        self._seen: set[str] = set()  # scenes not announced in `scene_ids`: checked once per process
        self.reads = 0

    def _first_read(self, scene_id: str) -> bool:
        slot = self._slot.get(scene_id)
        first = scene_id not in self._seen if slot is None else not self._checked[slot]
        if slot is None:
            self._seen.add(scene_id)
        else:
            self._checked[slot] = True
        return first

    def get(self, scene_id: str) -> dict[str, np.ndarray]:
        if scene_id in self._scenes:
            self._scenes.move_to_end(scene_id)
            return self._scenes[scene_id]
        if self._reader is None:  # opened lazily, so each loader worker opens its own
            from ross3d.cache.reader import CacheReader

            self._reader = CacheReader(self.cache_dir)
        # a scene's first read in the run is checked (checksums, finite values), later reads are not
        arrays = self._reader.load_scene(scene_id, self.strategy, bf16_bits=True, check=self._first_read(scene_id))
        self.reads += 1
        self._scenes[scene_id] = arrays
        if len(self._scenes) > self.size:
            self._scenes.popitem(last=False)
        return arrays


def _stack(scenes: Sequence[dict[str, np.ndarray]], key: str) -> torch.Tensor:
    """Stack one cached array over the batch; bf16 bit patterns (uint16) become a torch.bfloat16 view. A batch of
    one scene is a view of the cached array, not a copy (a copy of the SigLIP features costs a third of a cold read);
    nothing downstream writes into a batch."""
    arrays = [sc[key] for sc in scenes]
    stacked = torch.from_numpy(arrays[0])[None] if len(arrays) == 1 else torch.from_numpy(np.stack(arrays))
    return stacked.view(torch.bfloat16) if stacked.dtype == torch.uint16 else stacked


def pad_right(arrays: Sequence[np.ndarray], length: int, value) -> torch.Tensor:
    """(N, length, ...) tensor of the arrays, each followed by `value` up to `length` along its first axis."""
    out = np.full((len(arrays), length, *arrays[0].shape[1:]), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return torch.from_numpy(out)


def collate(samples: Sequence[TextSample], scenes: Sequence[dict[str, np.ndarray]], pad_id: int) -> dict:
    """Right-padded text and stacked cached tensors in the model's batch format (docs/model.md)."""
    length = max(len(s.input_ids) for s in samples)
    n_obj = max(1, max(len(sc["objects/object_ids"]) for sc in scenes))
    ids = pad_right([s.input_ids for s in samples], length, pad_id)
    labels = pad_right([s.labels for s in samples], length, -100)
    mask = pad_right([np.ones(len(s.input_ids), np.int64) for s in samples], length, 0)
    # objects without vertices have NaN boxes: padding for the grounding head, never a target
    valid = [np.isfinite(sc["objects/boxes"]).all(1) for sc in scenes]
    # (B, queries, n_obj): row t of sample b holds the positives of its t-th `<ground>` query
    positive = np.zeros((len(samples), max(1, max(len(s.targets) for s in samples)), n_obj), bool)
    for b, (s, sc, v) in enumerate(zip(samples, scenes, valid)):
        for t, target in enumerate(s.targets):
            positive[b, t, :len(v)] = np.isin(sc["objects/object_ids"], target) & v
    boxes = [np.where(v[:, None], sc["objects/boxes"], 0.0).astype(np.float32) for sc, v in zip(scenes, valid)]
    # (B, turns, 3): centre t of sample b goes to its t-th `<coord>` token; has_box marks the finite ones
    centres = np.zeros((len(samples), max(1, max(len(s.box_centers) for s in samples)), 3), np.float32)
    has_box = np.zeros(centres.shape[:2], bool)
    for b, s in enumerate(samples):
        for t, c in enumerate(s.box_centers):
            if c is not None and np.isfinite(c).all():
                centres[b, t], has_box[b, t] = c, True
    stack = lambda key: _stack(scenes, key)  # noqa: E731
    return {
        "input_ids": ids, "attention_mask": mask, "labels": labels,
        "vision": stack("frames/vision"), "voxels": stack("tokens/voxels"),
        "view_mean": stack("frames/vae_mean"), "view_logvar": stack("frames/vae_logvar"),
        "bev_mean": stack("bev/vae_mean"), "bev_logvar": stack("bev/vae_logvar"), "bev_valid": stack("bev/valid27"),
        "grounding": torch.tensor([s.task in GROUNDING_TASKS for s in samples]),
        "object_boxes": pad_right(boxes, n_obj, 0.0),
        "object_membership": pad_right([sc["objects/membership"] for sc in scenes], n_obj, False),
        "object_valid": pad_right(valid, n_obj, False),
        "object_positive": torch.from_numpy(positive),
        "box_center": torch.from_numpy(centres), "has_box": torch.from_numpy(has_box),
    }
