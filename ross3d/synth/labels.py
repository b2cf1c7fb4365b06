"""The label vocabulary of synthetic scenes: ScanNet raw categories with their nyu40 ids, and named colours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelInfo:
    raw_category: str
    nyu40id: int
    nyu40class: str


# raw_category -> nyu40 (as in scannetv2-labels.combined.tsv)
LABELS = {info.raw_category: info for info in [
    LabelInfo("wall", 1, "wall"), LabelInfo("floor", 2, "floor"), LabelInfo("ceiling", 22, "ceiling"),
    LabelInfo("cabinet", 3, "cabinet"), LabelInfo("bed", 4, "bed"), LabelInfo("chair", 5, "chair"),
    LabelInfo("office chair", 5, "chair"), LabelInfo("sofa", 6, "sofa"), LabelInfo("table", 7, "table"),
    LabelInfo("coffee table", 7, "table"), LabelInfo("door", 8, "door"), LabelInfo("window", 9, "window"),
    LabelInfo("bookshelf", 10, "bookshelf"), LabelInfo("picture", 11, "picture"), LabelInfo("desk", 14, "desk"),
    LabelInfo("curtain", 16, "curtain"), LabelInfo("refrigerator", 24, "refridgerator"),
    LabelInfo("tv", 25, "television"), LabelInfo("box", 29, "box"), LabelInfo("toilet", 33, "toilet"),
    LabelInfo("sink", 34, "sink"), LabelInfo("lamp", 35, "lamp"), LabelInfo("bathtub", 36, "bathtub"),
    LabelInfo("trash can", 39, "otherfurniture"), LabelInfo("toaster oven", 40, "otherprop"),
    LabelInfo("piano", 39, "otherfurniture"), LabelInfo("dresser", 17, "dresser"),
]}

COLORS = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40),
    "white": (235, 235, 230), "black": (30, 30, 30), "brown": (120, 75, 40), "orange": (235, 130, 30),
    "purple": (130, 50, 160), "gray": (128, 128, 128),
}

LABEL_MAP_COLUMNS = ["id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
                     "eigen13class", "ModelNet40", "ModelNet", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
                     "wnsynsetkey", "mpcat40index", "mpcat40"]


def label_map_tsv() -> str:
    """A scannetv2-labels.combined.tsv with the real header and one row per synthetic label."""
    lines = ["\t".join(LABEL_MAP_COLUMNS)]
    for k, info in enumerate(LABELS.values(), start=1):
        row = [str(k), info.raw_category, info.raw_category, "100", str(info.nyu40id), "", info.nyu40class,
               info.nyu40class, "", "", "", "", "", "", "", str(info.nyu40id), info.nyu40class]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"
