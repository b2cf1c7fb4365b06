"""Multi-turn packing (`data.pack_turns: K`): the training rows of one scene and task become conversations of up to
K question-answer turns, so one forward over the scene's visual tokens trains K answers or K `<ground>` queries.

The visual tokens dominate a sample's length (840 of about 900 tokens in the demo), so a packed sample costs
little more than one of its rows, and an epoch takes about K times fewer steps. Rows are grouped by (task, scene),
each group in a seeded order cut into chunks of K (the last may be shorter; K = 1 keeps the rows in file order);
vision-only rows stay single. A packed Scan2Cap sample has one `<coord>` per turn, each with its own box centre.

Every epoch packs anew (its order seeded by (seed, epoch)): with the same packs in every epoch, the model learns each
whole conversation instead of the task. On the demo's ScanRefer prompts alone, fixed packs drove the grounding loss
to 0.68 in 150 steps while the argmax object was right for 20% of the training prompts asked alone and 9% of val;
packed anew every epoch, 300 steps reached 45% and 41% (docs/demo.md, Packing anew every epoch). The packing is a pure function of (rows, K,
seed, epoch, repeat), so a resumed run packs the same samples. `data.task_repeat` lists a task's rows several times
per epoch, each copy packed in its own order (docs/demo.md, A masked view's own states and repeated grounding rows).
Evaluation stays single-turn, as the original's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from ross3d.prep.qa.schema import VISION_ONLY, Sample

UNPACKED_TASKS = (VISION_ONLY,)  # no text to pack


def pack_rows(rows: Sequence[Sample], turns: int, seed: int, epoch: int = 0,
              repeat: Mapping[str, int] | None = None) -> list[list[Sample]]:
    """The rows as packs of up to `turns` rows of one (task, scene), groups in order of first appearance, each group
    in the order seeded by (seed, epoch). `repeat[task]` copies of a task's group are packed one after the other,
    each in its own order, so no pack holds a row twice."""
    if turns < 1:
        raise ValueError(f"turns must be >= 1, got {turns}")
    repeat = repeat or {}
    if turns == 1:  # the original: one row per sample, in file order (a repeated task's rows once per copy)
        return [[row] for copy in range(max([1, *repeat.values()])) for row in rows if copy < repeat.get(row.task, 1)]
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for row in rows:
        groups[(row.task, row.scene_id)].append(row)
    rng = np.random.default_rng([seed, epoch])
    packs = []
    for (task, _), members in groups.items():
        size = 1 if task in UNPACKED_TASKS else turns
        for _copy in range(repeat.get(task, 1)):
            order = rng.permutation(len(members))
            packs += [[members[i] for i in order[k:k + size]] for k in range(0, len(members), size)]
    return packs
