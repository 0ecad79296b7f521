"""Lazy probabilities of a Dask array: one task per chunk, each computed like a block of a file.

Each chunk is taken with the halo its features need (nothing added at the image border) and
handed to :func:`~gpuheadless.pipeline.block_task.compute_block` as a window
onto the whole image, so a chunk's pixels get exactly the arithmetic they get in a batch run
whatever the chunking: the result equals the command line's, on whatever scheduler computes it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .blocks import Block
from .in_memory import AXES, ArrayTask, array_source, to_axes
from .lane import Lane


def _canonical(data: Any, axes: str) -> Any:
    """The Dask array in ``tzyxc`` order, axes it lacks added with extent 1."""
    import dask.array as da  # noqa: PLC0415

    present = [a for a in AXES if a in axes]
    data = da.transpose(data, [axes.index(a) for a in present])
    index = tuple(slice(None) if a in axes else None for a in AXES)
    return data[index]


def lazy_probabilities(task: ArrayTask, data: Any, axes: str, wanted: str) -> Any:
    """Probabilities of the Dask array ``data`` (axes ``axes``) as a lazy float32 array in ``wanted`` axes."""
    import dask  # noqa: PLC0415
    import dask.array as da  # noqa: PLC0415

    image = _canonical(data, axes)
    shape = tuple(int(n) for n in image.shape)
    block_task = task.block_task(Lane(array_source(image, AXES), AXES))
    n_classes = block_task.n_classes
    halo = (0, *block_task.halo(), 0)  # every stage's
    image = image.rechunk({0: 1, 4: -1})  # one time step per task, all channels together
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in image.chunks]
    tasks = np.empty(image.numblocks[:4] + (1,), dtype=object)  # one block along c
    for location in np.ndindex(*image.numblocks[:4]):
        origin = [int(starts[k][i]) for k, i in enumerate(location)] + [0]
        stop = [o + image.chunks[k][i] for k, (o, i) in enumerate(zip(origin, location + (0,)))]
        window = tuple(slice(max(0, a - h), min(n, b + h)) for a, b, h, n in zip(origin, stop, halo, shape))
        chunk = dask.delayed(_chunk_probabilities)(task, image[window], [w.start for w in window], shape,
                                                   origin, stop, n_classes)
        tasks[location + (0,)] = da.from_delayed(chunk, tuple(b - a for a, b in zip(origin[:4], stop[:4])) + (n_classes,),
                                          dtype=np.float32)
    result = da.block(tasks.tolist())
    return to_axes(result, wanted)


def _chunk_probabilities(task: ArrayTask, window: np.ndarray, window_start: list[int], shape: tuple[int, ...],
                         origin: list[int], stop: list[int], n_classes: int) -> np.ndarray:
    """Probabilities of one chunk ``origin:stop`` (tzyxc) from ``window``, the chunk with its halo."""
    from .block_task import compute_block  # noqa: PLC0415

    lane = Lane(_window_source(np.asarray(window), window_start, shape), AXES)
    block_task = task.block_task(lane)
    out = np.empty(tuple(b - a for a, b in zip(origin[:4], stop[:4])) + (n_classes,), dtype=np.float32)
    for step, t in enumerate(range(origin[0], stop[0])):
        out[step] = compute_block(block_task, Block(t, tuple(origin[1:4]), tuple(stop[1:4])))
    return out


def _window_source(window: np.ndarray, start: list[int], shape: tuple[int, ...]) -> Any:
    """An image of the whole ``shape`` of which only ``window`` (placed at ``start``) can be read."""
    source = array_source(window, AXES)
    source.shape = shape

    def read(region: tuple[slice, ...]) -> np.ndarray:
        return window[tuple(slice((r.start or 0) - s, n if r.stop is None else r.stop - s)
                            for r, s, n in zip(region, start, window.shape))]

    source.read_region = read
    return source
