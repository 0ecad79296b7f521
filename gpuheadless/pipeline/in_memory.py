"""Pixel Classification of an array in memory, block by block, by the same block function as files.

The array is wrapped as an :class:`~gpuheadless.io.readers.ImageSource`, so everything after it
(lane geometry, feature plan, block layout, :func:`~gpuheadless.pipeline.block_task.compute_block`)
is the batch path unchanged, and the numbers are the command line's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend
from ..config import RunConfig
from ..errors import UserError
from ..features.plan import check_image_size
from ..forest.model import Forest
from ..io.readers import ImageSource
from ..project.ilp import Project
from .block_runner import block_budget_bytes, layout_blocks, run_local
from .blocks import Block
from .export_plan import expected_channels, stage_plans
from .lane import Lane

AXES = "tzyxc"


class ArrayAxesError(UserError, ValueError):
    """An array whose axes or channels do not fit the project (a ``ValueError``, as ilastik raises)."""


def array_source(array: Any, axes: str, display: str = "array") -> ImageSource:
    """An in-memory (or lazily indexed) array as an input image with the given axes."""
    return ImageSource(display=display, axes=axes, shape=tuple(int(n) for n in array.shape), dtype=np.dtype(array.dtype),
                       nickname=display, dataset_dir="", read_region=lambda region: array[region])


class DeviceImageSource(ImageSource):
    """An image in GPU memory (a CuPy array): regions are read as device arrays, never copied
    to the host."""

    def read(self, region: tuple[slice, ...]) -> Any:
        return self.read_region(region)


def device_source(array: Any, axes: str, display: str = "array") -> DeviceImageSource:
    """A CuPy array as an input image with the given axes (see :class:`DeviceImageSource`)."""
    return DeviceImageSource(display=display, axes=axes, shape=tuple(int(n) for n in array.shape),
                             dtype=np.dtype(array.dtype), nickname=display, dataset_dir="",
                             read_region=lambda region: array[region])


def check_axes(axes: str, ndim: int) -> str:
    """``axes`` lowercased, checked to name each of ``ndim`` dimensions once with letters of ``tzyxc``."""
    axes = axes.lower()
    if len(axes) != ndim or len(set(axes)) != len(axes) or any(a not in AXES for a in axes):
        raise ArrayAxesError(f"axes {axes!r} do not name the {ndim} dimensions of the array with distinct letters "
                             "of t, z, y, x, c")
    return axes


def project_axes(project: Project) -> str:
    """The axes results come in: the training data's, with ``c`` added (as ilastik's API returns them)."""
    trained = project.lanes[-1].axes if project.lanes and project.lanes[-1].axes else "yx"
    return trained if "c" in trained else trained + "c"


def check_fits(project: Project, forest: Forest, axes: str, shape: tuple[int, ...]) -> None:
    """ilastik's API checks: the channel count and the number of spatial axes of the training data.

    Raises
    ------
    ArrayAxesError
        With ilastik's wording.
    """
    extent = dict(zip(axes, shape))
    trained = project_axes(project)
    trained_spatial = sum(a in "zyx" for a in trained)
    spatial = sum(a in "zyx" for a in axes)
    z_extent = extent.get("z", 1)
    channels = expected_channels(project, forest, z_extent)
    if channels is not None and extent.get("c", 1) != channels:
        raise ArrayAxesError(f"Number of channels mismatch. Classifier trained for {channels} but input has "
                             f"{extent.get('c', 1)}")
    if spatial != trained_spatial:
        raise ArrayAxesError(f"Number of spatial dims doesn't match. Classifier trained for {trained_spatial} but "
                             f"input has {spatial}")


@dataclass(frozen=True)
class ArrayTask:
    """What computing probabilities of one array needs, besides the array.

    ``stage`` is the Autocontext stage whose probabilities are wanted (0 = the first, the only
    one of a Pixel Classification project); the stages before it run too.
    """

    project: Project
    forest: Forest
    backend: Backend
    config: RunConfig
    stage: int = 0

    def block_task(self, lane: Lane) -> Any:
        """The block function's inputs for ``lane``: the stage's plan and forest, and the stages before it."""
        from .block_task import BlockTask  # noqa: PLC0415
        from .stages import Stage  # noqa: PLC0415

        plans = stage_plans(self.project, lane)[:self.stage + 1]
        stages = self.project.stages[:self.stage + 1]
        forests = [self.forest, *(s.forest for s in stages[1:])]
        for plan, forest in zip(plans, forests):
            check_image_size(plan, lane.shape[1:4], lane.source.display)
            if forest.n_features != plan.n_features:
                raise ArrayAxesError(f"the project's classifier expects {forest.n_features} features, the array "
                                     f"gives {plan.n_features}")
        upstream = tuple(Stage(p, f, s.n_classes) for p, f, s in zip(plans[:-1], forests[:-1], stages[:-1]))
        n = stages[-1].n_classes
        return BlockTask(self.backend, lane, plans[-1], forests[-1], "Probabilities", n, slice(0, n), None, 1,
                         upstream=upstream)


def probabilities_tzyxc(task: ArrayTask, source: ImageSource, axes: str, on_device: bool = False,
                        progress: Callable[[int, int], None] | None = None) -> Any:
    """Probabilities of a whole image, ``(T, Z, Y, X, classes)`` float32, computed in blocks.

    With ``on_device`` (a :class:`DeviceImageSource` and a GPU backend) every block stays in GPU
    memory and the result is an array of the backend's (CuPy); otherwise a NumPy array.
    ``progress(done, total)`` is called in this thread after each block.
    """
    from .block_task import compute_block  # noqa: PLC0415

    lane = Lane(source, axes)
    block_task = task.block_task(lane)
    if on_device:
        block_task = dataclasses.replace(block_task, keep_on_device=True)
    n = block_task.n_classes
    region = {a: (0, e) for a, e in zip(AXES, lane.shape[:4] + (n,))}
    layout = layout_blocks(task.config, block_task, region, block_budget_bytes(task.config, task.backend))
    xp = task.backend.xp if on_device else np
    out = xp.zeros(lane.shape[:4] + (n,), dtype=np.float32)

    def store(block: Block, values: np.ndarray) -> None:
        out[(block.t,) + block.slices] = values

    done = [0]

    def advance() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(layout.blocks))

    run_local(task.config, layout.blocks, lambda b: compute_block(block_task, b), store, advance)
    return out


def result_axes(project: Project, axes: str, shape: tuple[int, ...]) -> str:
    """The axes of the result: the project's (see :func:`project_axes`), after any time or z axis of
    the array that the training data lacked but the array has more than one step of."""
    order = project_axes(project)
    extent = dict(zip(axes, shape))
    return "".join(a for a in "tz" if a not in order and extent.get(a, 1) > 1) + order


def to_axes(result: np.ndarray, wanted: str) -> np.ndarray:
    """A ``tzyxc`` result in the axis order ``wanted`` (axes left out must have extent 1)."""
    index = tuple(slice(None) if a in wanted else 0 for a in AXES)
    kept = [a for a in AXES if a in wanted]
    return result[index].transpose([kept.index(a) for a in wanted])
