"""ilastik's "2D Skeleton Features" (spec/object-classification.md §3.6), as vigra computes them,
by the C extension ``_cskeleton.c``.

Per object of a 2D label image, in its box widened by one pixel: the vector distance transform,
the raw skeleton, thinning of simple points (the table :data:`REMOVABLE`), and the skeleton as a
graph (diameter, centre, branches and their salience, holes). Ties are broken as vigra breaks
them. Coordinates are (x, y) pixel indices of the whole image. The readable Python version of
every step, which the tests check the C one against, is ``tests/skeleton_reference.py``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NAMES = ("Diameter", "Euclidean Diameter", "Total Length", "Average Length", "Branch Count", "Hole Count",
         "Skeleton Center", "Terminal 1", "Terminal 2")
# The 8 neighbours (dx, dy) in vigra's order (scan order of the 3x3 window); the first four come
# before the pixel in scan order. A neighbourhood configuration has the first neighbour as its
# highest bit.
NEIGHBOURS = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


def _simple(configuration: int) -> bool:
    """Whether removing the pixel keeps its 3x3 neighbourhood's topology (8-connected object,
    4-connected background)."""
    inside = {NEIGHBOURS[i] for i in range(8) if configuration >> (7 - i) & 1}

    def components(points: set, adjacent) -> list[set]:
        found, seen = [], set()
        for start in points:
            if start in seen:
                continue
            part, stack = {start}, [start]
            seen.add(start)
            while stack:
                a = stack.pop()
                for b in points:
                    if b not in seen and adjacent(a, b):
                        seen.add(b)
                        part.add(b)
                        stack.append(b)
            found.append(part)
        return found

    def touching8(a, b):
        return max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1

    def touching4(a, b):
        return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1

    outside = set(NEIGHBOURS) - inside
    background = [c for c in components(outside, touching4) if any(abs(p[0]) + abs(p[1]) == 1 for p in c)]
    return len(components(inside, touching8)) == 1 and len(background) == 1


def _removable(configuration: int) -> bool:
    """Thinning keeps end points: a simple pixel goes only with exactly two 4-neighbours in the
    skeleton, or one 4-neighbour among exactly three neighbours."""
    if not _simple(configuration):
        return False
    inside = [NEIGHBOURS[i] for i in range(8) if configuration >> (7 - i) & 1]
    direct = sum(1 for dx, dy in inside if abs(dx) + abs(dy) == 1)
    return direct == 2 or (direct == 1 and len(inside) == 3)


REMOVABLE = tuple(_removable(c) for c in range(256))


@dataclass
class SkeletonFeatures:
    """The skeleton features of one object."""

    diameter: float = 0.0
    euclidean_diameter: float = 0.0
    total_length: float = 0.0
    average_length: float = 0.0
    branch_count: int = 0
    hole_count: int = 0
    center: tuple[int, int] = (0, 0)
    terminal1: tuple[int, int] = (0, 0)
    terminal2: tuple[int, int] = (0, 0)


@functools.cache
def _cskeleton_module():
    """The C extension, given the thinning table once per process."""
    from . import _cskeleton  # noqa: PLC0415

    _cskeleton.set_removable(bytes(REMOVABLE))
    return _cskeleton


def compiled_skeleton(mask: np.ndarray, origin: tuple[int, int], image_shape: tuple[int, int]) -> SkeletonFeatures:
    """The skeleton features of the object ``mask`` (its box widened by one pixel, (Y, X) bool)
    at ``origin`` (x, y) of an image of ``image_shape`` (Y, X)."""
    _cskeleton = _cskeleton_module()
    height, width = mask.shape
    values = _cskeleton.skeleton(np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), width, height, int(origin[0]),
                                 int(origin[1]), int(image_shape[1]), int(image_shape[0]))
    diameter, euclidean, total, average, branches, holes, cx, cy, t1x, t1y, t2x, t2y, _ = values
    return SkeletonFeatures(diameter, euclidean, total, average, branches, holes, (cx, cy), (t1x, t1y), (t2x, t2y))


def skeleton_features(labels: np.ndarray, names=NAMES, origin=(0, 0), image_shape: tuple[int, int] | None = None,
                      compute=None) -> dict[str, np.ndarray]:
    """The selected skeleton features of objects 1..n of a 2D label image (X, Y, 1), float32 tables.

    ``origin`` (x, y) and ``image_shape`` (Y, X) place a crop holding whole objects (and the pixel
    around each) in the time point's image. ``compute`` is the per-object function: the compiled
    one by default (the tests give the Python reference).
    """
    compute = compute or compiled_skeleton
    plane = np.ascontiguousarray(labels[:, :, 0].T)  # (Y, X)
    image_shape = image_shape or plane.shape
    n = int(plane.max()) if plane.size else 0
    table = {name: np.zeros((n + 1, 2 if name in ("Skeleton Center", "Terminal 1", "Terminal 2") else 1))
             for name in NAMES}
    for i, box in enumerate(ndimage.find_objects(plane.astype(np.int64)), start=1):
        if box is None:
            continue
        y0, x0 = max(box[0].start - 1, 0), max(box[1].start - 1, 0)
        y1, x1 = min(box[0].stop + 1, plane.shape[0]), min(box[1].stop + 1, plane.shape[1])
        found = compute(plane[y0:y1, x0:x1] == i, (x0 + origin[0], y0 + origin[1]), image_shape)
        for name, value in (("Diameter", found.diameter), ("Euclidean Diameter", found.euclidean_diameter),
                            ("Total Length", found.total_length), ("Average Length", found.average_length),
                            ("Branch Count", found.branch_count), ("Hole Count", found.hole_count),
                            ("Skeleton Center", found.center), ("Terminal 1", found.terminal1),
                            ("Terminal 2", found.terminal2)):
            table[name][i] = value
    return {name: table[name].astype(np.float32) for name in names}
