"""The ScanNet label map (scannetv2-labels.combined.tsv: raw_category -> nyu40id) and the ScanRefer
unique/multiple rule of the original (M3DRef-CLIP): the object's nyu40 class, with classes outside the
18 benchmark classes mapped to 39 ("other"), is "unique" when it occurs for exactly one annotated object of
the same scene in the split file, else "multiple"."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from ross3d.errors import InputError

KEPT_NYU40 = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39})
OTHER = 39


def read_label_map(path: str | Path) -> dict[str, int]:
    """raw_category -> nyu40id from the tab-separated ScanNet label file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as err:
        raise InputError(path, f"cannot read label map: {err.strerror}") from None
    if not rows or "raw_category" not in rows[0] or "nyu40id" not in rows[0]:
        raise InputError(path, "not a ScanNet label map (needs tab-separated raw_category and nyu40id columns)")
    mapping = {}
    for line, row in enumerate(rows, start=2):
        try:
            mapping[row["raw_category"]] = int(row["nyu40id"])
        except (TypeError, ValueError):
            raise InputError(path, f"line {line}: nyu40id {row['nyu40id']!r} is not an integer") from None
    return mapping


def nyu40_class(object_name: str, label_map: dict[str, int]) -> int:
    """The benchmark class of a ScanRefer object_name ("_" read as space); unknown names and other classes -> 39."""
    nyu40 = label_map.get(object_name.replace("_", " "), OTHER)
    return nyu40 if nyu40 in KEPT_NYU40 else OTHER


def unique_multiple(records: list[tuple[str, int, str]], label_map: dict[str, int]) -> list[str]:
    """"unique"/"multiple" for each (scene_id, object_id, object_name) of a split's records, in order.

    Each distinct (scene_id, object_id) is counted once, under the class of its first record's name; each record
    is then labelled with the count of its own name's class in its scene (the original's two passes)."""
    counted: set[tuple[str, int]] = set()
    per_scene: Counter = Counter()
    for scene, oid, name in records:
        if (scene, oid) not in counted:
            counted.add((scene, oid))
            per_scene[(scene, nyu40_class(name, label_map))] += 1
    return ["unique" if per_scene[(scene, nyu40_class(name, label_map))] == 1 else "multiple"
            for scene, _, name in records]
