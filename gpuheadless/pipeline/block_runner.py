"""Run one lane's blocks and write them: in a local thread pool, or as tasks on a Dask cluster.

The block function (``block_task.compute_block``) is pure; where a block lands in the output is
decided here (:func:`place`), the same way for every runner, so every runner writes the same
bytes. Blocks already recorded as finished (``--resume``, Zarr outputs) are skipped.
"""
from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ..config import RunConfig, resident_memory_mb
from ..errors import UserError
from ..export import ExportTransform
from .blocks import Block, choose_block_shape, count_blocks, cpu_block_bytes, iter_blocks
from .timing import process_age_s

log = logging.getLogger(__name__)

# Share of the budget left after the interpreter that blocks may use; the rest covers allocator
# slack, I/O buffers and the results waiting to be written.
_BLOCK_SHARE = 0.85
_MIN_BLOCK_BUDGET = 64 * 2**20
_GPU_SHARE = 0.8
# Blocks planned for one lane at most: the plan is a list (about 300 bytes a block), and a lane
# of more blocks would take months. Only a header declaring an absurd shape gets there.
MAX_BLOCKS = 2**22


def block_budget_bytes(config: RunConfig, backend: Any) -> float:
    """Bytes the blocks in flight may use on ``backend``'s device.

    ``LAZYFLOW_TOTAL_RAM_MB`` minus what the process holds now; on a GPU also at most 80 % of
    the free device memory, and at most ``--gpu_memory_mb``.
    """
    free = (config.ram_budget_mb - resident_memory_mb()) * 2**20
    budget = max(free * _BLOCK_SHARE, _MIN_BLOCK_BUDGET)
    device_free = backend.device_free_bytes()
    if device_free is not None:
        budget = min(budget, device_free * _GPU_SHARE)
        if config.gpu_memory_mb is not None:
            budget = min(budget, config.gpu_memory_mb * 2**20)
    return budget


@dataclass(frozen=True)
class BlockLayout:
    """The blocks of one lane's exported region."""

    blocks: list[Block]
    block_shape: tuple[int, int, int]
    halo: tuple[int, int, int]
    region: dict[str, tuple[int, int]]


def layout_blocks(
    config: RunConfig, task: Any, region: dict[str, tuple[int, int]], budget: float,
    block_shape: tuple[int, int, int] | None = None,
) -> BlockLayout:
    """Blocks covering ``region`` whose working set fits ``budget`` per worker, at most the size
    that computes fastest on a CPU (:func:`~gpuheadless.pipeline.blocks.cpu_block_bytes`).

    ``task`` is any region computation: it has a ``lane`` (what is read, ``tzyxc``), a ``backend``,
    ``halo()`` (the (z, y, x) margin a block reads around itself) and ``block_bytes(shape)`` (the
    working set of one block of that (z, y, x) shape): pixel features and forests
    (:class:`~gpuheadless.pipeline.block_task.BlockTask`) and object images alike.

    ``block_shape`` imposes the blocks (an unfinished output being resumed keeps its layout).

    Raises
    ------
    UserError
        More than :data:`MAX_BLOCKS` blocks (a header declaring an absurd shape).
    """
    start = tuple(region[a][0] for a in "zyx")
    stop = tuple(region[a][1] for a in "zyx")
    lane = task.lane
    halo = tuple(min(h, n) for h, n in zip(task.halo(), lane.shape[1:4]))
    workers = max(config.workers or config.threads, 1)
    sharing = max(config.threads, 1) if config.scheduler else workers  # cluster workers each have the budget
    region_shape = tuple(b - a for a, b in zip(start, stop))
    on_device = getattr(task.backend, "on_device", False)
    target = None if on_device else cpu_block_bytes(region_shape, config.block_mb)
    shape = block_shape or choose_block_shape(region_shape, halo, task.block_bytes, budget, workers, sharing, target)
    count = count_blocks(tuple(b - a for a, b in zip(start, stop)), shape) * len(range(*region["t"]))
    if count > MAX_BLOCKS:
        raise UserError(f"input '{lane.source.display}': {count:,} blocks of {shape} (z,y,x) to compute, more than the "
                        f"{MAX_BLOCKS:,} gpuheadless plans for one input; is its declared shape {lane.shape} (t,z,y,x,c) right?")
    blocks = list(iter_blocks(range(*region["t"]), start, stop, shape))
    log.debug("%d block(s) of %s (z,y,x) with halo %s", len(blocks), shape, halo)
    return BlockLayout(blocks, shape, halo, region)


def block_id(block: Block) -> str:
    return f"{block.t}-{block.start[0]}-{block.start[1]}-{block.start[2]}"


def chunk_shape(layout: BlockLayout, out_axes: str, out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output chunks equal to the blocks (t = 1, c whole), so each block fills whole chunks."""
    size = {"t": 1, "z": layout.block_shape[0], "y": layout.block_shape[1], "x": layout.block_shape[2]}
    return tuple(min(size.get(a, n), n) if a != "c" else n for a, n in zip(out_axes, out_shape))


def place(block: Block, values: np.ndarray, transform: ExportTransform, region: dict[str, tuple[int, int]],
          out_axes: str) -> tuple[tuple[slice, ...], np.ndarray]:
    """Where block ``values`` ``(Z, Y, X, C)`` go in the output, and the data to write there."""
    data = transform.apply(values)
    where = {"t": slice(block.t - region["t"][0], block.t - region["t"][0] + 1), "c": slice(None)}
    for axis, a, b in zip("zyx", block.start, block.stop):
        where[axis] = slice(a - region[axis][0], b - region[axis][0])
    data = data[None]  # (1, Z, Y, X, C) in tzyxc
    # Axes the output leaves out have extent 1 (output_axes checked that), so drop them.
    kept = [a for a in "tzyxc" if a in out_axes]
    data = data.reshape([n for a, n in zip("tzyxc", data.shape) if a in out_axes])
    return tuple(where[a] for a in out_axes), np.transpose(data, [kept.index(a) for a in out_axes])


def run_local(
    config: RunConfig,
    blocks: Iterable[Block],
    compute: Callable[[Block], np.ndarray],
    store: Callable[[Block, np.ndarray], None],
    advance: Callable[[], None],
) -> None:
    """Compute blocks in ``LAZYFLOW_THREADS`` threads (or in this thread for 0) and store each."""
    blocks = list(blocks)
    age = process_age_s()
    if age is not None:
        log.debug("First block after %.2f s since the process started", age)
    workers = max(config.threads, 1)
    if config.threads <= 0 or len(blocks) <= 1:
        for block in blocks:
            store(block, compute(block))
            advance()
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending: dict[Any, Block] = {}
        queue = iter(blocks)
        for block in queue:
            pending[pool.submit(compute, block)] = block
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                block = pending.pop(future)
                store(block, future.result())
                advance()
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(compute, nxt)] = nxt
    except BaseException:
        # a failure or a stop signal: blocks not started are dropped, not computed before the error shows
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
