"""The readable Python version of the 2D skeleton features (``gpuheadless/objects/skeleton.py``
computes them in C): the reference the tests compare the C extension with, step by step as
vigra does it.

For each object of a 2D label image, in the object's box widened by one pixel:

1. the vector distance of each object pixel to the nearest pixel outside the object (lower
   envelopes of parabolas along x, then y);
2. the raw skeleton: of two 4-adjacent object pixels whose nearest outside pixels are neither
   equal nor adjacent, the one nearer the bisector; an object pixel whose nearest outside pixel
   is not next to its neighbour outside the object; a line ending two pixels from the border gets
   its last step;
3. thinning: simple points that are no end points, removed cheapest (nearest the border) first;
4. the skeleton as a graph (8-neighbours, steps of 1 and sqrt 2): its longest path (the
   diameter), the point half way along it (the centre), the tree of shortest paths from the
   centre, each branch's length and salience (length / local width), holes (loops around pixels
   outside the object), and the branches whose salience reaches 0.2 of the centre's.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from gpuheadless.objects.skeleton import NEIGHBOURS, REMOVABLE, SkeletonFeatures

BACKWARD = NEIGHBOURS[:4]  # the neighbours before the pixel in scan order
RELATIVE_PRUNING = 0.2
_CUT = 0.5 * 1.7976931348623157e308  # vigra's weight of a missing step
_DIAGONAL = math.sqrt(2.0)
MIN_SALIENCE_LENGTH = 4.0  # shorter branches are boundary staircase noise

def _envelope_line(inside: list[bool], vectors: list[tuple[int, int]], axis: int, far: tuple[int, int]
                   ) -> list[tuple[int, int]]:
    """One scanline of the vector distance: per pixel the offset to the nearest outside pixel.

    ``inside`` marks the object's pixels; runs of equal marks are segments, each bounded by the
    pixels of the neighbouring segments. The array border is no boundary: ``far`` (twice the
    image size) stands for "nothing there". A crop's ends inside the image are never object
    pixels, so an object's segments come out as over the whole line.
    """
    w = float(len(inside))

    def height(vector) -> float:
        total = 0.0
        for i in range(axis + 1):
            total += float(vector[i]) * float(vector[i])
        return total

    out: list[tuple[int, int]] = [far] * len(inside)
    border = far
    stack = [[border, height(border), 0.0, -1.0, w]]  # point, apex height, left, centre, right
    label = inside[0]
    begin = 0
    n = len(inside)
    current = 0
    while current <= n:
        if current < n:
            point = vectors[current] if inside[current] == label else (0, 0)
        else:
            point = border
        apex = height(point)
        while True:
            top = stack[-1]
            diff = float(current) - top[3]
            intersection = float(current) + (apex - top[1] - diff * diff) / (2.0 * diff)
            if intersection < top[2]:
                stack.pop()
                if not stack:
                    intersection = float(begin)
                else:
                    continue
            elif intersection < top[4]:
                top[4] = intersection
            if intersection < w:
                stack.append([point, apex, intersection, float(current), w])
            if current < n and inside[current] == label:
                break
            entry = 0
            for c in range(begin, current):
                while c >= stack[entry][4]:
                    entry += 1
                vector = list(stack[entry][0])
                vector[axis] = int(stack[entry][3] - c)
                out[c] = (vector[0], vector[1])
            if current == n:
                break
            begin = current
            label = inside[current]
            point = vectors[current]
            apex = height(point)
            stack = [[(0, 0), 0.0, begin - 1.0, begin - 1.0, w]]
        current += 1
    return out


def boundary_vectors(mask: np.ndarray, image_shape: tuple[int, int]) -> list[list[tuple[int, int]]]:
    """Per pixel of ``mask`` (Y, X) the (dx, dy) to its nearest pixel outside the object;
    ``image_shape`` is the whole image's (Y, X)."""
    height, width = mask.shape
    far = (2 * image_shape[1], 2 * image_shape[0])
    rows = mask.tolist()
    vectors = [[far] * width for _ in range(height)]
    for y in range(height):
        vectors[y] = _envelope_line(rows[y], vectors[y], 0, far)
    for x in range(width):
        column = _envelope_line([rows[y][x] for y in range(height)], [vectors[y][x] for y in range(height)], 1, far)
        for y in range(height):
            vectors[y][x] = column[y]
    return vectors


class _ChangeableHeap:
    """An indexed binary min-heap whose entries can change priority (vigra's tie behaviour)."""

    def __init__(self) -> None:
        self.heap: list = [None]
        self.position: dict = {}
        self.priority: dict = {}

    def __len__(self) -> int:
        return len(self.heap) - 1

    def __contains__(self, item) -> bool:
        return item in self.position

    def top(self):
        return self.heap[1]

    def _swap(self, i: int, j: int) -> None:
        heap = self.heap
        heap[i], heap[j] = heap[j], heap[i]
        self.position[heap[i]] = i
        self.position[heap[j]] = j

    def _up(self, k: int) -> None:
        heap, priority = self.heap, self.priority
        while k > 1 and priority[heap[k // 2]] > priority[heap[k]]:
            self._swap(k, k // 2)
            k //= 2

    def _down(self, k: int) -> None:
        heap, priority = self.heap, self.priority
        size = len(heap) - 1
        while 2 * k <= size:
            j = 2 * k
            if j < size and priority[heap[j]] > priority[heap[j + 1]]:
                j += 1
            if priority[heap[k]] <= priority[heap[j]]:
                break
            self._swap(k, j)
            k = j

    def push(self, item, value: float) -> None:
        if item not in self.position:
            self.heap.append(item)
            self.position[item] = len(self.heap) - 1
            self.priority[item] = value
            self._up(len(self.heap) - 1)
        elif value > self.priority[item]:
            self.priority[item] = value
            self._down(self.position[item])
        elif value < self.priority[item]:
            self.priority[item] = value
            self._up(self.position[item])

    def pop(self) -> None:
        first = self.heap[1]
        last = len(self.heap) - 1
        self._swap(1, last)
        self.heap.pop()
        self._down(1)
        del self.position[first]
        del self.priority[first]


class _SkeletonGraph:
    """The skeleton pixels of one object, their 8-neighbour steps, and vigra's Dijkstra."""

    def __init__(self, pixels: list[tuple[int, int]], image_shape: tuple[int, int]) -> None:
        self.pixels = set(pixels)
        self.width, self.height = image_shape[1], image_shape[0]
        self.low = (min(p[0] for p in pixels), min(p[1] for p in pixels))
        self.high = (max(p[0] for p in pixels), max(p[1] for p in pixels))
        self.removed: set = set()  # cut steps, both directions
        self.predecessor: dict = {}
        self._around: dict = {}

    def steps(self, p) -> list:
        """(neighbour, step length, neighbour in the skeleton, neighbour in the skeleton's box) per
        neighbour of ``p`` in the image, in vigra's order (cached: the search visits pixels often)."""
        found = self._around.get(p)
        if found is None:
            found = [(q, 1.0 if q[0] == p[0] or q[1] == p[1] else _DIAGONAL, q in self.pixels, self._in_box(q))
                     for q in self.neighbours(p)]
            self._around[p] = found
        return found

    def neighbours(self, p, steps=NEIGHBOURS):
        x, y = p
        for dx, dy in steps:
            q = (x + dx, y + dy)
            if 0 <= q[0] < self.width and 0 <= q[1] < self.height:
                yield q

    def _in_box(self, p) -> bool:
        return self.low[0] <= p[0] <= self.high[0] and self.low[1] <= p[1] <= self.high[1]

    def linked(self, p, q) -> bool:
        return p in self.pixels and q in self.pixels and (p, q) not in self.removed

    def cut(self, p, q) -> None:
        self.removed.add((p, q))
        self.removed.add((q, p))

    def shortest_paths(self, source, target=None, unbounded: bool = False) -> list:
        """Settle nodes from ``source`` until ``target`` (or all); returns them in order and leaves
        each settled node's predecessor in ``self.predecessor``.

        ``unbounded``: vigra searches loops without a distance limit, so pixels across a missing
        step (inside the skeleton's box) enter the queue with a practically infinite distance.
        They are never settled before the target, but they shape the heap, hence its ties."""
        predecessor = {source: source}
        distance = {source: 0.0}
        queue = _ChangeableHeap()
        queue.push(source, 0.0)
        order = []
        while len(queue):
            top = queue.top()
            queue.pop()
            order.append(top)
            if top == target:
                break
            removed = self.removed
            for q, step, in_skeleton, in_box in self.steps(top):
                if not in_skeleton or (top, q) in removed:
                    if unbounded and in_box and q not in queue and q not in predecessor:
                        queue.push(q, distance[top] + _CUT)
                        distance[q] = distance[top] + _CUT
                        predecessor[q] = top
                    continue
                candidate = distance[top] + step
                if q in queue:
                    if candidate < distance[q]:
                        queue.push(q, candidate)
                        distance[q] = candidate
                        predecessor[q] = top
                elif q not in predecessor:
                    queue.push(q, candidate)
                    distance[q] = candidate
                    predecessor[q] = top
        while len(queue):
            del predecessor[queue.top()]
            queue.pop()
        self.predecessor = predecessor
        return order


@dataclass
class _Node:
    parent: tuple | None = None
    principal_child: tuple | None = None
    length: float = 0.0
    salience: float = 1.0
    partial_area: int = 0
    is_loop: bool = False


def _raw_skeleton(mask: np.ndarray, origin: tuple[int, int], image_shape: tuple[int, int]):
    """Skeleton pixels (x, y) of the object in ``mask`` (its box widened by one pixel, clipped to
    the image), and the squared distance to the border per object pixel."""
    height, width = mask.shape
    ox, oy = origin
    vectors = boundary_vectors(mask, image_shape)
    inside = mask.tolist()
    squared = {}
    for y in range(height):
        for x in range(width):
            if inside[y][x]:
                vx, vy = vectors[y][x]
                squared[(x + ox, y + oy)] = vx * vx + vy * vy
    marked = set()
    ends = []

    def mark(p):
        marked.add(p)
        if squared[p] == 4:
            ends.append(p)

    for y in range(height):
        for x in range(width):
            for dx, dy in ((0, -1), (-1, 0)):  # 4-neighbour edges, from the later pixel to the earlier
                qx, qy = x + dx, y + dy
                if qx < 0 or qy < 0:
                    continue
                a, b = inside[y][x], inside[qy][qx]
                if not a and not b:
                    continue
                p1, p2 = (x + ox, y + oy), (qx + ox, qy + oy)
                v1, v2 = vectors[y][x], vectors[qy][qx]
                if a and b:
                    dv = (v2[0] - v1[0] + dx, v2[1] - v1[1] + dy)
                    if max(abs(dv[0]), abs(dv[1])) <= 1:
                        continue
                    d1 = dv[0] * dx + dv[1] * dy
                    d2 = dv[0] * (v1[0] + v2[0]) + dv[1] * (v1[1] + v2[1])
                    if d1 * d2 <= 0:
                        mark(p1)
                    else:
                        mark(p2)
                else:
                    if a and max(abs(v1[0] - dx), abs(v1[1] - dy)) > 1:
                        marked.add(p1)
                    if b and max(abs(v2[0] + dx), abs(v2[1] + dy)) > 1:
                        marked.add(p2)
    for p in ends:  # a line that stops two pixels short of the border gets one more pixel
        if not any((p[0] + dx, p[1] + dy) in marked and squared[(p[0] + dx, p[1] + dy)] < 4 for dx, dy in NEIGHBOURS):
            vx, vy = vectors[p[1] - oy][p[0] - ox]
            marked.add((p[0] + int(vx / 2), p[1] + int(vy / 2)))
    return marked, squared


def _thin(marked: set, squared: dict, image_shape: tuple[int, int]) -> set:
    """Remove removable simple points, cheapest first (first in, first out among equals)."""
    height, width = image_shape

    def interior(p) -> bool:
        return 0 < p[0] < width - 1 and 0 < p[1] < height - 1

    def configuration(p) -> int:
        value = 0
        for dx, dy in NEIGHBOURS:
            value = (value << 1) | ((p[0] + dx, p[1] + dy) in marked)
        return value

    queue = []
    counter = 0
    for p in sorted(marked, key=lambda q: (q[1], q[0])):
        if interior(p) and REMOVABLE[configuration(p)]:
            heapq.heappush(queue, (squared[p], counter, p))
            counter += 1
    while queue:
        _, _, p = heapq.heappop(queue)
        if p not in marked or not REMOVABLE[configuration(p)]:
            continue
        marked.discard(p)
        for dx, dy in NEIGHBOURS:
            q = (p[0] + dx, p[1] + dy)
            if interior(q) and q in marked and REMOVABLE[configuration(q)]:
                heapq.heappush(queue, (squared[q], counter, q))
                counter += 1
    return marked


def _norm(dx: float, dy: float) -> float:
    """vigra's norm: the square root of the squared norm."""
    return math.sqrt(dx * dx + dy * dy)


def _arc_length_middle(line: list) -> int:
    """Index of the point half way along the polyline (rounded)."""
    lengths = [0.0]
    for a, b in zip(line, line[1:]):
        lengths.append(lengths[-1] + _norm(b[0] - a[0], b[1] - a[1]))
    if len(line) == 1:
        return 0
    target = 0.5 * lengths[-1]
    k = next(i for i, value in enumerate(lengths) if value >= target)
    if k == 0:
        return 0
    position = k - 1 + (target - lengths[k - 1]) / (lengths[k] - lengths[k - 1])
    return int(math.floor(position + 0.5))


def _encloses_outside_pixel(polygon: list, inside) -> bool:
    """Whether a pixel not in the object lies strictly inside the closed polygon of pixel centres."""
    ys = [p[1] for p in polygon]
    edges = list(zip(polygon, polygon[1:] + polygon[:1]))
    on_polygon = set(polygon)
    for y in range(min(ys) + 1, max(ys)):
        crossings = []
        for (x1, y1), (x2, y2) in edges:
            if (y1 <= y < y2) or (y2 <= y < y1):
                crossings.append(x1 + (y - y1) * (x2 - x1) / (y2 - y1))
        crossings.sort()
        for left, right in zip(crossings[0::2], crossings[1::2]):
            for x in range(math.ceil(left), math.floor(right) + 1):
                if (x, y) not in on_polygon and not inside((x, y)):
                    return True
    return False


def object_skeleton(mask: np.ndarray, origin: tuple[int, int], image_shape: tuple[int, int]) -> SkeletonFeatures:
    """The skeleton features of the object in ``mask`` (Y, X; its box widened by one pixel and
    clipped to the image), placed at ``origin`` (x, y) in an image of ``image_shape`` (Y, X)."""
    marked, squared = _raw_skeleton(mask, origin, image_shape)
    marked = _thin(marked, squared, image_shape)
    result = SkeletonFeatures()
    if not marked:
        return result
    pixels = sorted(marked, key=lambda q: (q[1], q[0]))
    graph = _SkeletonGraph(pixels, image_shape)
    anchor = pixels[-1]
    first = graph.shortest_paths(anchor)[-1]
    last = graph.shortest_paths(first)[-1]
    line = [last]
    while graph.predecessor[line[-1]] != line[-1]:
        line.append(graph.predecessor[line[-1]])
    center = line[_arc_length_middle(line)]
    order = graph.shortest_paths(center)
    predecessor = dict(graph.predecessor)
    nodes = {p: _Node(parent=p) for p in pixels}

    def node(p) -> _Node:
        return nodes.setdefault(p, _Node())

    for p1 in reversed(order):  # from the periphery to the centre: tree, lengths, salience
        p2 = predecessor[p1]
        n1, n2 = nodes[p1], nodes[p2]
        n1.parent = p2
        for p in graph.neighbours(p1, BACKWARD):
            if not graph.linked(p1, p) or p == p2 or predecessor.get(p) == p1:
                continue
            if n1.principal_child is None or node(p).principal_child is None:
                continue  # may close a loop: decided below
            graph.cut(p1, p)
        length = n1.length + _norm(p1[0] - p2[0], p1[1] - p2[1])
        if n2.length < length:
            n2.length = length
            n2.principal_child = p1
        if n1.length >= MIN_SALIENCE_LENGTH:
            n1.salience = max(n1.salience, (n1.length + 0.5) / math.sqrt(squared[p1]))
            if n2.salience < n1.salience:
                n2.salience = n1.salience
    for p1 in order:  # from the centre out: lengths along the principal branches, partial areas
        n1 = nodes[p1]
        p2 = n1.parent
        n2 = nodes[p2]
        if p1 == n2.principal_child:
            n1.length = n2.length
            n1.salience = n2.salience
        else:
            n1.length += _norm(p2[0] - p1[0], p2[1] - p1[1])
        n1.partial_area = n2.partial_area + (p1[0] * p2[1] - p1[1] * p2[0])
    nodes[center].is_loop = True
    inside_mask = mask.tolist()

    def in_object(p) -> bool:
        x, y = p[0] - origin[0], p[1] - origin[1]
        return 0 <= y < len(inside_mask) and 0 <= x < len(inside_mask[0]) and inside_mask[y][x]

    holes, total_length = 0, 0.0
    for p1 in reversed(order):  # from the periphery in: loops around holes, dead ends
        n1 = nodes[p1]
        if n1.principal_child is None:
            for p2 in graph.neighbours(p1):
                n2 = node(p2)
                if n1.parent == p2 or not graph.linked(p1, p2):
                    continue
                if abs(n1.partial_area - (p1[0] * p2[1] - p1[1] * p2[0]) - n2.partial_area) <= 3:
                    continue  # too small to enclose a pixel
                graph.cut(p1, p2)
                graph.shortest_paths(p1, p2, unbounded=True)
                if p2 not in graph.predecessor:
                    continue
                loop = [p1, p2]
                p = p2
                while True:
                    p = graph.predecessor[p]
                    loop.append(p)
                    if p == graph.predecessor[p]:
                        break
                if _encloses_outside_pixel(loop, in_object):
                    holes += 1
                    total_length += n1.length + n2.length
                    most = max(n1.salience, n2.salience)
                    for q in loop[1:]:
                        nodes[q].is_loop = True
                        nodes[q].salience = max(nodes[q].salience, most)
            if not n1.is_loop and squared[p1] >= 4:  # a branch that does not reach the border
                p, n = p1, n1
                while True:
                    n.salience = 0.0
                    for q in graph.neighbours(p):
                        graph.cut(p, q)
                    if nodes[n.parent].principal_child != p:
                        break
                    p = n.parent
                    n = nodes[p]
        if n1.is_loop:
            nodes[n1.parent].is_loop = True
    threshold = RELATIVE_PRUNING * nodes[center].salience
    branches, branch_length = 0, 0.0
    for p1 in order:
        n1 = nodes[p1]
        if n1.principal_child is None and n1.salience >= threshold and not n1.is_loop:
            branches += 1
            branch_length += n1.length
            total_length += n1.length
    diameter = 0.0
    for a, b in zip(line, line[1:]):  # plain accumulation (Python >= 3.12's sum() compensates)
        diameter += _norm(b[0] - a[0], b[1] - a[1])
    result.diameter = diameter
    result.total_length = total_length
    result.average_length = branch_length / branches if branches else 0.0
    result.branch_count = branches
    result.hole_count = holes
    result.center = center
    result.terminal1, result.terminal2 = line[0], line[-1]
    result.euclidean_diameter = _norm(line[-1][0] - line[0][0], line[-1][1] - line[0][1])
    return result


