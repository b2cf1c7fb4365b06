"""Procedural rooms in the axis-aligned frame: floor, walls, ceiling, tilted ceiling fragments along the walls (as
real scans have), and 5-15 labelled, coloured furniture objects; densely triangulated with per-vertex segment ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ross3d.synth.labels import COLORS

CELL = 0.2  # triangle grid spacing in metres

# floor objects: label -> (size ranges (dx, dy, dz) in metres, shape); tall ones stand against a wall
FLOOR_OBJECTS = {
    "chair": (((0.45, 0.55), (0.45, 0.55), (0.8, 0.95)), "chair"),
    "office chair": (((0.5, 0.6), (0.5, 0.6), (0.9, 1.05)), "chair"),
    "table": (((0.9, 1.6), (0.7, 1.0), (0.72, 0.78)), "table"),
    "coffee table": (((0.8, 1.1), (0.5, 0.7), (0.4, 0.5)), "table"),
    "desk": (((1.1, 1.5), (0.6, 0.75), (0.72, 0.78)), "table"),
    "bed": (((1.4, 1.8), (1.9, 2.1), (0.5, 0.6)), "box"),
    "sofa": (((1.6, 2.2), (0.8, 0.95), (0.8, 0.9)), "sofa"),
    "cabinet": (((0.6, 1.0), (0.4, 0.55), (0.8, 1.0)), "box"),
    "bookshelf": (((0.8, 1.2), (0.3, 0.4), (1.7, 2.0)), "box"),
    "refrigerator": (((0.6, 0.8), (0.6, 0.7), (1.7, 1.85)), "box"),
    "dresser": (((0.9, 1.2), (0.45, 0.55), (0.8, 1.0)), "box"),
    "trash can": (((0.3, 0.4), (0.3, 0.4), (0.4, 0.6)), "box"),
    "box": (((0.3, 0.5), (0.3, 0.5), (0.25, 0.45)), "box"),
    "lamp": (((0.3, 0.4), (0.3, 0.4), (1.4, 1.6)), "lamp"),
    "toilet": (((0.4, 0.5), (0.6, 0.7), (0.7, 0.8)), "box"),
}
WALL_OBJECTS = {"picture": ((0.5, 0.9), (0.4, 0.7), 1.3), "window": ((0.9, 1.4), (1.0, 1.3), 0.9),
                "door": ((0.8, 0.9), (2.0, 2.1), 0.0), "curtain": ((1.0, 1.6), (1.8, 2.1), 0.3)}


@dataclass
class SynthObject:
    """An annotated object: its aggregation id, raw label, colour name (None for structure) and segments."""

    object_id: int
    label: str
    color_name: str | None
    segments: list[int]
    box: np.ndarray = field(default_factory=lambda: np.full(6, np.nan))  # aligned AABB (cx, cy, cz, dx, dy, dz)


@dataclass
class SynthRoom:
    size: tuple[float, float, float]
    vertices: np.ndarray  # (N, 3) float64, aligned frame
    colors: np.ndarray  # (N, 3) uint8
    faces: np.ndarray  # (F, 3) int32
    segment_of_vertex: np.ndarray  # (N,) int64
    objects: list[SynthObject]


def quad(origin, u, v, cell: float = CELL) -> tuple[np.ndarray, np.ndarray]:
    """A grid-triangulated parallelogram origin + s*u + t*v, s, t in [0, 1]; normal along u x v."""
    origin, u, v = (np.asarray(x, float) for x in (origin, u, v))
    nu = max(1, int(np.ceil(np.linalg.norm(u) / cell)))
    nv = max(1, int(np.ceil(np.linalg.norm(v) / cell)))
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    verts = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, faces


def box(lo, hi, cell: float = CELL) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box with outward-facing triangles."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = np.diag(hi - lo)
    sides = [(lo, dy, dx), ((lo[0], lo[1], hi[2]), dx, dy), (lo, dz, dy), ((hi[0], lo[1], lo[2]), dy, dz),
             (lo, dx, dz), ((lo[0], hi[1], lo[2]), dz, dx)]
    return _merge([quad(o, u, v, cell) for o, u, v in sides])


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _shape(kind: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Furniture shapes from boxes; all parts stay inside [lo, hi] and touch its faces."""
    size = hi - lo
    if kind == "table":
        t = 0.05
        top = box([lo[0], lo[1], hi[2] - t], hi)
        legs = [box([x, y, lo[2]], [x + t, y + t, hi[2] - t])
                for x in (lo[0], hi[0] - t) for y in (lo[1], hi[1] - t)]
        return _merge([top, *legs])
    if kind == "chair":
        seat_z = lo[2] + 0.45 * size[2]
        seat = box([lo[0], lo[1], seat_z], [hi[0], hi[1], seat_z + 0.06])
        back = box([lo[0], hi[1] - 0.06, seat_z], hi)
        legs = [box([x, y, lo[2]], [x + 0.05, y + 0.05, seat_z])
                for x in (lo[0], hi[0] - 0.05) for y in (lo[1], hi[1] - 0.05)]
        return _merge([seat, back, *legs])
    if kind == "sofa":
        base = box(lo, [hi[0], hi[1], lo[2] + 0.45 * size[2]])
        back = box([lo[0], hi[1] - 0.2, lo[2]], hi)
        return _merge([base, back])
    if kind == "lamp":
        c = (lo + hi) / 2
        pole = box([c[0] - 0.02, c[1] - 0.02, lo[2]], [c[0] + 0.02, c[1] + 0.02, hi[2] - 0.3])
        shade = box([lo[0], lo[1], hi[2] - 0.3], hi)
        return _merge([pole, shade])
    return box(lo, hi)


class _MeshBuilder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.verts, self.faces, self.colors, self.segs = [], [], [], []
        self.n = 0
        self.next_segment = int(rng.integers(1, 50))

    def new_segment(self) -> int:
        self.next_segment += int(self.rng.integers(1, 40))
        return self.next_segment

    def add(self, part: tuple[np.ndarray, np.ndarray], rgb, segment: int) -> None:
        v, f = part
        shade = self.rng.normal(0, 6, (len(v), 1))
        self.colors.append(np.clip(np.asarray(rgb, float) + shade, 0, 255).astype(np.uint8))
        self.verts.append(v)
        self.faces.append(f + self.n)
        self.segs.append(np.full(len(v), segment, np.int64))
        self.n += len(v)


def _place_floor_objects(rng, size, n_objects) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Rejection-sample non-overlapping footprints; objects taller than 1.2 m go against a wall."""
    w, d, _ = size
    placed: list[tuple[str, np.ndarray, np.ndarray]] = []
    labels = list(FLOOR_OBJECTS)
    for _ in range(400):
        if len(placed) == n_objects:
            break
        label = labels[int(rng.integers(len(labels)))] if placed or rng.random() < 0.5 else "chair"
        ranges, _kind = FLOOR_OBJECTS[label]
        dims = np.array([rng.uniform(*r) for r in ranges])
        if rng.random() < 0.5:
            dims[[0, 1]] = dims[[1, 0]]
        if dims[2] > 1.2:  # against a wall along x or y
            if rng.random() < 0.5:
                x = rng.uniform(-w / 2 + 0.05, w / 2 - dims[0] - 0.05)
                y = -d / 2 + 0.02 if rng.random() < 0.5 else d / 2 - dims[1] - 0.02
            else:
                y = rng.uniform(-d / 2 + 0.05, d / 2 - dims[1] - 0.05)
                x = -w / 2 + 0.02 if rng.random() < 0.5 else w / 2 - dims[0] - 0.02
        else:
            x = rng.uniform(-w / 2 + 0.1, w / 2 - dims[0] - 0.1)
            y = rng.uniform(-d / 2 + 0.1, d / 2 - dims[1] - 0.1)
        lo = np.array([x, y, 0.0])
        hi = lo + dims
        if any(lo[0] < h[0] + 0.15 and l[0] < hi[0] + 0.15 and lo[1] < h[1] + 0.15 and l[1] < hi[1] + 0.15
               for _, l, h in placed):
            continue
        placed.append((label, lo, hi))
    return placed


def build_room(rng: np.random.Generator) -> SynthRoom:
    """A random furnished room; the floor is z = 0 and the room is centred on x = y = 0."""
    size = (float(rng.uniform(4.5, 7.0)), float(rng.uniform(4.0, 6.0)), float(rng.uniform(2.5, 2.8)))
    w, d, h = size
    mb = _MeshBuilder(rng)
    objects: list[SynthObject] = []

    def annotate(label, color_name, parts_rgb):
        segments = []
        for part, rgb in parts_rgb:
            seg = mb.new_segment()
            mb.add(part, rgb, seg)
            segments.append(seg)
        objects.append(SynthObject(len(objects), label, color_name, segments))

    x0, y0 = -w / 2, -d / 2
    annotate("floor", None, [(quad([x0, y0, 0], [w, 0, 0], [0, d, 0]), (150, 130, 110))])
    walls = [([x0, y0, 0], [0, 0, h], [w, 0, 0]), ([-x0, y0, 0], [0, 0, h], [0, d, 0]),
             ([-x0, -y0, 0], [0, 0, h], [-w, 0, 0]), ([x0, -y0, 0], [0, 0, h], [0, -d, 0])]
    for origin, u, v in walls:  # u x v points into the room
        annotate("wall", None, [(quad(origin, u, v), (215, 210, 200))])
    annotate("ceiling", None, [(quad([x0, y0, h], [0, d, 0], [w, 0, 0]), (240, 240, 240))])
    # Unannotated tilted ceiling fragments along two walls, 0.3-0.6 m below the top, facing down into the room.
    strip = float(rng.uniform(0.3, 0.45))
    low, high = h - float(rng.uniform(0.5, 0.6)), h - float(rng.uniform(0.3, 0.35))
    fragments = [quad([x0, y0, high], [0, strip, low - high], [w, 0, 0]),
                 quad([-x0, y0, high], [0, d, 0], [-strip, 0, low - high])]
    for frag in fragments:
        mb.add(frag, (225, 225, 225), mb.new_segment())

    color_names = list(COLORS)
    for label, lo, hi in _place_floor_objects(rng, size, int(rng.integers(5, 12))):
        cname = color_names[int(rng.integers(len(color_names)))]
        annotate(label, cname, [(_shape(FLOOR_OBJECTS[label][1], lo, hi), COLORS[cname])])
    for label in rng.permutation(list(WALL_OBJECTS))[: int(rng.integers(1, 4))]:
        (wr, hr, z0) = WALL_OBJECTS[label]
        width, height = rng.uniform(*wr), rng.uniform(*hr)
        x = rng.uniform(-w / 2 + 0.2, w / 2 - width - 0.2)
        lo, hi = np.array([x, d / 2 - 0.04, z0]), np.array([x + width, d / 2 - 0.005, z0 + height])
        cname = color_names[int(rng.integers(len(color_names)))]
        annotate(str(label), cname, [(box(lo, hi), COLORS[cname])])

    vertices = np.concatenate(mb.verts)
    room = SynthRoom(size, vertices, np.concatenate(mb.colors), np.concatenate(mb.faces).astype(np.int32),
                     np.concatenate(mb.segs), objects)
    for obj in objects:
        pts = vertices[np.isin(room.segment_of_vertex, obj.segments)]
        lo, hi = pts.min(0), pts.max(0)
        obj.box = np.concatenate([(lo + hi) / 2, hi - lo])
    return room
