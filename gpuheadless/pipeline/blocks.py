"""Block planning: blocks on a grid anchored at the exported region, sized to the memory budget."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

# Float32 temporaries alive while one scale's features are computed, per voxel of the block with
# its halo ("outer") and per voxel of the block ("inner"), measured with tracemalloc on the
# full-feature projects (the worst case): the presmoothed image, the partial separable passes
# each feature shares, and the structure tensor's products. In 2D every array spans about the
# outer box; in 3D most are cropped towards the inner box after the first passes.
_TEMPORARIES_2D = (36, 0)
_TEMPORARIES_3D = (4, 48)
# Per inner voxel and class, the forest stage: scores, probabilities and the derived export.
_PER_CLASS = 4

# The working set of one block that computes fastest on a CPU core, measured on the full-feature
# projects (2 threads, bench/block_sweep.py). Larger blocks leave the caches, make the allocator
# map fresh pages for every temporary, and leave threads idle at the end; in 3D smaller ones
# spend most of their time on halos (a 41^3 block filters 6x its own volume at scale 10).
CPU_BLOCK_BYTES_2D = 64 * 2**20
CPU_BLOCK_BYTES_3D = 256 * 2**20
# Blocks each worker should get at least, so that threads finish together.
_BLOCKS_PER_WORKER = 4


@dataclass(frozen=True)
class Block:
    """One unit of work: one time step and a box in (z, y, x)."""

    t: int
    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))


def block_cost_bytes(
    side: tuple[int, int, int], halo: tuple[int, int, int], channels_in: int, n_features: int, n_classes: int
) -> int:
    """Estimated peak bytes while one block of ``side`` (z, y, x) is computed and predicted.

    The raw channels and one scale's temporaries over the block with its halo, the feature
    matrix over the block, and the forest stage's arrays.
    """
    inner = side[0] * side[1] * side[2]
    outer = 1
    for n, h in zip(side, halo):
        outer *= n + 2 * h
    per_outer, per_inner = _TEMPORARIES_3D if side[0] > 1 else _TEMPORARIES_2D
    return 4 * (outer * (channels_in + per_outer) + inner * (n_features + per_inner + _PER_CLASS * n_classes))


def choose_block_shape(
    region_shape: tuple[int, int, int],
    halo: tuple[int, int, int],
    cost: Callable[[tuple[int, int, int]], float],
    budget_bytes: float,
    workers: int,
    sharing: int | None = None,
    target_bytes: float | None = None,
) -> tuple[int, int, int]:
    """The largest near-isotropic block (z, y, x) whose working set ``cost(shape)`` (bytes) fits
    ``budget_bytes / sharing`` and ``target_bytes``.

    ``sharing`` is how many blocks are computed at once within the budget (default ``workers``;
    on a cluster each worker has its own budget, shared by its threads only). ``target_bytes`` is
    the working set that computes fastest (see :func:`cpu_block_bytes`; None on a GPU, where the
    largest block is fastest): the budget is a ceiling, not a target.

    Axes of extent 1 stay 1. On large regions blocks are made smaller until each worker gets
    several (:data:`_BLOCKS_PER_WORKER`), unless they would become small against the halo.
    """
    per_worker = budget_bytes / max(workers if sharing is None else sharing, 1)
    if target_bytes is not None:
        per_worker = min(per_worker, target_bytes)

    def shape_for(side: int) -> tuple[int, int, int]:
        return tuple(min(n, side) for n in region_shape)

    lo, hi = 1, max(region_shape)
    while lo < hi:  # largest side that fits
        mid = (lo + hi + 1) // 2
        if cost(shape_for(mid)) <= per_worker:
            lo = mid
        else:
            hi = mid - 1
    # the same number of blocks, split evenly: no thin last block carrying a full halo, and the
    # threads' last blocks end together
    shape = tuple(-(-n // -(-n // b)) for n, b in zip(region_shape, shape_for(lo)))
    # Keep every worker busy on large regions, unless blocks would become much smaller than the halo.
    voxels = region_shape[0] * region_shape[1] * region_shape[2]
    if workers > 1 and voxels > 2**18:
        while count_blocks(region_shape, shape) < _BLOCKS_PER_WORKER * workers:
            largest = max(range(3), key=lambda i: shape[i])
            if shape[largest] <= 4 * max(halo[largest], 16):
                break
            shape = tuple((n + 1) // 2 if i == largest else n for i, n in enumerate(shape))
    return shape


def cpu_block_bytes(region_shape: tuple[int, int, int], override_mb: float | None = None) -> float:
    """The fastest working set of one block on a CPU: :data:`CPU_BLOCK_BYTES_2D` or ``_3D`` by
    the region's z extent, or ``override_mb`` MiB (``GPUHEADLESS_BLOCK_MB``)."""
    if override_mb is not None:
        return override_mb * 2**20
    return CPU_BLOCK_BYTES_3D if region_shape[0] > 1 else CPU_BLOCK_BYTES_2D


def count_blocks(region_shape: tuple[int, ...], block_shape: tuple[int, ...]) -> int:
    count = 1
    for n, b in zip(region_shape, block_shape):
        count *= -(-n // b)
    return count


def iter_blocks(t_range: range, start: tuple[int, int, int], stop: tuple[int, int, int], block_shape: tuple[int, int, int]) -> Iterator[Block]:
    """Blocks covering ``start:stop`` for every time step, in C order."""
    for t in t_range:
        for z in range(start[0], stop[0], block_shape[0]):
            for y in range(start[1], stop[1], block_shape[1]):
                for x in range(start[2], stop[2], block_shape[2]):
                    yield Block(
                        t,
                        (z, y, x),
                        (min(z + block_shape[0], stop[0]), min(y + block_shape[1], stop[1]), min(x + block_shape[2], stop[2])),
                    )
