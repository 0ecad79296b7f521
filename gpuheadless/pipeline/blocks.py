"""Block planning: blocks on a grid anchored at the exported region, sized to the memory budget."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

# Per-voxel working set of one block, in float32 units, besides the feature and output channels:
# the raw channels, one presmoothed image, and the partial derivatives a 3D scale keeps alive.
_TEMPORARIES = 12


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


def block_cost_bytes(side: tuple[int, int, int], halo: tuple[int, int, int], channels_in: int, channels_out: int) -> int:
    """Estimated peak bytes while one block of ``side`` is computed."""
    inner = side[0] * side[1] * side[2]
    outer = 1
    for n, h in zip(side, halo):
        outer *= n + 2 * h
    return 4 * (outer * (channels_in + _TEMPORARIES) + inner * (channels_out + 2))


def choose_block_shape(
    region_shape: tuple[int, int, int],
    halo: tuple[int, int, int],
    channels_in: int,
    channels_out: int,
    budget_bytes: float,
    workers: int,
) -> tuple[int, int, int]:
    """The largest near-isotropic block (z, y, x) whose working set fits ``budget_bytes / workers``.

    Axes of extent 1 stay 1. When the region would otherwise be one block while several workers
    are available, blocks are made smaller so that each worker gets one.
    """
    per_worker = budget_bytes / max(workers, 1)

    def shape_for(side: int) -> tuple[int, int, int]:
        return tuple(min(n, side) for n in region_shape)

    lo, hi = 1, max(region_shape)
    while lo < hi:  # largest side that fits
        mid = (lo + hi + 1) // 2
        if block_cost_bytes(shape_for(mid), halo, channels_in, channels_out) <= per_worker:
            lo = mid
        else:
            hi = mid - 1
    shape = shape_for(lo)
    # Keep every worker busy on large regions, unless blocks would become much smaller than the halo.
    voxels = region_shape[0] * region_shape[1] * region_shape[2]
    if workers > 1 and voxels > 2**18:
        while count_blocks(region_shape, shape) < workers:
            largest = max(range(3), key=lambda i: shape[i])
            if shape[largest] <= 4 * max(halo[largest], 16):
                break
            shape = tuple((n + 1) // 2 if i == largest else n for i, n in enumerate(shape))
    return shape


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
