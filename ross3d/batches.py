"""Batches from cached scenes, shared by the trainer, eval and visualize: the tokenised sample (`TextSample`), the
per-process scene LRU over a CACHE_DIR (`SceneCache`, first read of a scene checked) and `collate`, which stacks the
cached arrays and pads the text into the model's batch format (docs/model.md). Plain numpy/torch: nothing here knows
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

from ross3d.chat import ChatEncoder
from ross3d.prep.qa.schema import VISION_ONLY, Sample

GROUNDING_TASKS = ("scanrefer", "multi3drefer")


@dataclass(frozen=True)
class TextSample:
    """One tokenised sample (training or evaluation) and the per-sample fields the collator needs."""

    task: str
    scene_id: str
    input_ids: np.ndarray
    labels: np.ndarray
    object_ids: tuple[int, ...]
    box_center: tuple[float, float, float] | None


def encode_row(row: Sample, encoder: ChatEncoder, spatial_instruction: bool) -> TextSample:
    """A samples.parquet row tokenised with the Qwen chat template; a vision-only row is the image alone."""
    if row.task == VISION_ONLY:
        enc = encoder.encode_vision_only(spatial_instruction)
    else:
        enc = encoder.encode([{"from": r, "value": t} for r, t in row.conversations], spatial_instruction)
    box = None if row.box_input is None else tuple(float(v) for v in row.box_input[:3])
    return TextSample(row.task, row.scene_id, np.asarray(enc.input_ids, np.int64), np.asarray(enc.labels, np.int64),
                      tuple(row.object_ids), box)


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
    positive = [np.isin(sc["objects/object_ids"], s.object_ids) & v for s, sc, v in zip(samples, scenes, valid)]
    boxes = [np.where(v[:, None], sc["objects/boxes"], 0.0).astype(np.float32) for sc, v in zip(scenes, valid)]
    has_box = [s.box_center is not None and bool(np.isfinite(s.box_center).all()) for s in samples]
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
        "object_positive": pad_right(positive, n_obj, False),
        "box_center": torch.tensor([s.box_center if h else (0.0, 0.0, 0.0) for s, h in zip(samples, has_box)],
                                   dtype=torch.float32),
        "has_box": torch.tensor(has_box),
    }
